//! Reading a `multipart/form-data` body part by part with [`multer`], over a
//! [`MeteredBody`]: text fields are collected (each up to
//! [`MAX_TEXT_FIELD`]), file parts are counted chunk by chunk and kept only when the rules
//! ask (up to a byte budget), so the body is never held whole.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::Request;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Body;

use super::{BodyError, MAX_TEXT_FIELD, MAX_UPLOAD_BYTES, Meter, MeteredBody, UploadStats};
use crate::simulate::reply::Reply;
use spillway_sidecar::clock::Clock;

/// How to read one kind of form.
#[derive(Clone, Copy, Debug)]
pub struct FormRules<'a> {
    /// Parts read as files (counted, not collected), whether or not they carry a filename.
    /// Other parts with a filename are counted and dropped; the rest are text fields.
    pub file_fields: &'a [&'a str],
    /// Keep the bytes of file parts, up to this many in all.
    pub keep_up_to: Option<u64>,
}

/// One file part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePart {
    /// The part's name (`file`, `image[]`, `mask`, …).
    pub name: String,
    /// Its filename, if it gave one.
    pub filename: Option<String>,
    /// Its bytes, counted.
    pub bytes: u64,
    /// Its bytes, when the rules keep them.
    pub content: Option<Bytes>,
}

/// A form as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// Text fields in order, `(name, value)`.
    pub fields: Vec<(String, String)>,
    /// File parts in order.
    pub files: Vec<FilePart>,
}

impl Form {
    /// The last value of the text field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The file parts whose name is one of `names`.
    pub fn files_named<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a FilePart> {
        self.files
            .iter()
            .filter(move |f| names.contains(&f.name.as_str()))
    }
}

/// Why a form could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The content type is not `multipart/form-data` with a boundary.
    #[error("Invalid Content-Type header ({0}), expected multipart/form-data with a boundary.")]
    NotMultipart(String),
    /// The body does not parse as multipart.
    #[error("The multipart body could not be parsed: {0}")]
    Malformed(String),
    /// A text field above [`MAX_TEXT_FIELD`].
    #[error("The form field '{0}' is longer than {MAX_TEXT_FIELD} bytes.")]
    FieldTooLong(String),
    /// The body is above [`MAX_UPLOAD_BYTES`].
    #[error("The upload exceeds {0} bytes.")]
    TooLarge(u64),
    /// The file parts are above the bytes the rules keep.
    #[error("The file exceeds the {0} bytes this backend can still hold.")]
    KeepLimit(u64),
}

impl FormError {
    /// The answer: 413 for sizes, else 400, OpenAI-shaped.
    pub fn reply(&self, files_max_bytes: u64) -> Reply {
        match self {
            Self::TooLarge(limit) => Reply::too_large(*limit),
            Self::KeepLimit(_) => Reply::files_full(files_max_bytes),
            Self::FieldTooLong(name) => Reply::bad_request(&self.to_string(), Some(name)),
            Self::NotMultipart(_) | Self::Malformed(_) => {
                Reply::bad_request(&self.to_string(), None)
            }
        }
    }
}

impl From<multer::Error> for FormError {
    fn from(err: multer::Error) -> Self {
        if let multer::Error::StreamReadFailed(cause) = &err {
            match cause.downcast_ref::<BodyError>() {
                Some(BodyError::TooLarge(limit)) => return Self::TooLarge(*limit),
                Some(other) => return Self::Malformed(other.to_string()),
                None => {}
            }
        }
        Self::Malformed(err.to_string())
    }
}

/// Reads the form of `request` (which arrived at `arrived`) by `rules`, paced to `rate`
/// bytes a second (0 = unpaced). Returns what was read of the body either way.
pub async fn read_form<B>(
    request: Request<B>,
    clock: Arc<dyn Clock>,
    arrived: Instant,
    rate: u64,
    rules: FormRules<'_>,
) -> (UploadStats, Result<Form, FormError>)
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let headers = request.headers();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let boundary = match multer::parse_boundary(&content_type) {
        Ok(boundary) => boundary,
        Err(_) => {
            let shown = if content_type.is_empty() {
                "none".to_owned()
            } else {
                content_type
            };
            return (UploadStats::default(), Err(FormError::NotMultipart(shown)));
        }
    };
    if declared.is_some_and(|len| len > MAX_UPLOAD_BYTES) {
        return (
            UploadStats::default(),
            Err(FormError::TooLarge(MAX_UPLOAD_BYTES)),
        );
    }
    if let (Some(len), Some(room)) = (declared, rules.keep_up_to)
        && len > room.saturating_add(64 << 10)
    {
        // The parts cannot fit (64 KiB is room enough for part headers and fields).
        return (UploadStats::default(), Err(FormError::KeepLimit(room)));
    }
    let meter = Meter::default();
    let body = MeteredBody::new(request.into_body(), meter.clone(), clock, arrived, rate);
    let mut multipart = multer::Multipart::new(body, boundary);
    let result = read_parts(&mut multipart, &meter, rules).await;
    (meter.stats(), result)
}

async fn read_parts(
    multipart: &mut multer::Multipart<'_>,
    meter: &Meter,
    rules: FormRules<'_>,
) -> Result<Form, FormError> {
    let mut form = Form::default();
    let mut kept = 0;
    while let Some(mut field) = multipart.next_field().await? {
        meter.parsed();
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let is_file = rules.file_fields.contains(&name.as_str());
        if !is_file && filename.is_none() {
            let mut text = BytesMut::new();
            while let Some(chunk) = field.chunk().await? {
                meter.parsed();
                if text.len() + chunk.len() > MAX_TEXT_FIELD {
                    return Err(FormError::FieldTooLong(name));
                }
                text.extend_from_slice(&chunk);
            }
            let value = String::from_utf8_lossy(&text).into_owned();
            form.fields.push((name, value));
            continue;
        }
        let keep = is_file.then_some(rules.keep_up_to).flatten();
        let mut content = keep.map(|_| BytesMut::new());
        let mut bytes = 0;
        while let Some(chunk) = field.chunk().await? {
            meter.parsed();
            bytes += chunk.len() as u64;
            if let (Some(limit), Some(content)) = (keep, content.as_mut()) {
                kept += chunk.len() as u64;
                if kept > limit {
                    return Err(FormError::KeepLimit(limit));
                }
                content.extend_from_slice(&chunk);
            }
        }
        if is_file {
            form.files.push(FilePart {
                name,
                filename,
                bytes,
                content: content.map(BytesMut::freeze),
            });
        }
    }
    Ok(form)
}
