//! A local Entra ID token endpoint over HTTPS (a test CA made with rcgen, served with rustls):
//! it records every token request's path and form fields, issues `entra-tok-N` tokens with a
//! chosen `expires_in`, and can be switched to answer with the AAD error JSON or to be
//! unreachable (new connections dropped, requests on kept-alive connections aborted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Issue tokens.
    Serve,
    /// 401 with the AAD error JSON (`invalid_client`).
    AadError,
    /// Drop connections: the endpoint is unreachable.
    Down,
}

/// One token request that reached the handler.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub form: HashMap<String, String>,
    pub at: Instant,
    /// The token issued, if any.
    pub issued: Option<String>,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    expires_in: u64,
    seen: Vec<Seen>,
    issued: u64,
    refused_connections: u64,
}

/// The running server; stops when dropped.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls() -> (rustls::ServerConfig, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .unwrap();
    (config, ca_cert.pem())
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl TokenServer {
    pub async fn start(expires_in: u64) -> TokenServer {
        let (config, ca_pem) = tls();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("token-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Serve,
            expires_in,
            seen: Vec::new(),
            issued: 0,
            refused_connections: 0,
        }));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                {
                    let mut state = shared.lock().unwrap();
                    if state.mode == Mode::Down {
                        state.refused_connections += 1;
                        drop(tcp);
                        continue;
                    }
                }
                let acceptor = acceptor.clone();
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TokenServer {
            addr,
            ca_file,
            _dir: dir,
            state,
            task,
        }
    }

    pub fn authority(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Token requests that failed because the server was down (connections dropped plus
    /// requests aborted on kept-alive connections).
    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused_connections
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = request.uri().path().to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?;
    let form = parse_form(&body.to_bytes());
    let mut state = state.lock().unwrap();
    let (status, json, issued) = match state.mode {
        Mode::Down => {
            state.refused_connections += 1;
            // An error from the service aborts the connection: the client sees no answer.
            return Err(std::io::Error::other("token server down"));
        }
        Mode::AadError => (
            StatusCode::UNAUTHORIZED,
            serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS700213: No matching federated identity record found.\r\nTrace ID: 1\r\nCorrelation ID: 2",
                "error_codes": [700213]
            }),
            None,
        ),
        Mode::Serve => {
            state.issued += 1;
            let token = format!("entra-tok-{}", state.issued);
            (
                StatusCode::OK,
                serde_json::json!({
                    "token_type": "Bearer",
                    "expires_in": state.expires_in,
                    "ext_expires_in": state.expires_in,
                    "access_token": token,
                }),
                Some(token),
            )
        }
    };
    state.seen.push(Seen {
        path,
        form,
        at: Instant::now(),
        issued,
    });
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}
