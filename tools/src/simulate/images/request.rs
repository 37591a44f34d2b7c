//! What an image request asks for, from a generations JSON body or an edits / variations
//! form, and what it bills.
//!
//! Billing (GPT image models, named `gpt-image…`; DALL·E models bill no tokens):
//! - input: the prompt's tokens (text) plus, for each input image (`image` / `image[]`; the
//!   `mask` is free), `65 + ⌈bytes / 1024⌉` tokens;
//! - output per image, by quality and size: 1024x1024 low 272, medium 1056, high 4160;
//!   1024x1536 408 / 1584 / 6240; 1536x1024 400 / 1568 / 6208; any other `WxH` the
//!   1024x1024 count scaled by its area (rounded up); `auto` quality is medium and `auto`
//!   size 1024x1024.

use serde_json::Value;

use super::super::route::Api;
use super::super::upload::Form;

/// The most images one request generates.
pub const MAX_IMAGES: u64 = 10;
/// Tokens every input image costs, before its bytes.
pub const IMAGE_BASE_TOKENS: u64 = 65;
/// Input image bytes per further token.
pub const IMAGE_BYTES_PER_TOKEN: u64 = 1024;
/// The image parts of an edit or variation form.
pub const IMAGE_FIELDS: [&str; 3] = ["image", "image[]", "mask"];

/// A request the simulator refuses with a 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// What was wrong.
    pub message: String,
    /// The parameter at fault.
    pub param: &'static str,
}

fn invalid(message: impl Into<String>, param: &'static str) -> Invalid {
    Invalid {
        message: message.into(),
        param,
    }
}

/// A GPT image model's quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quality {
    /// `low`
    Low,
    /// `medium` (and `auto`)
    Medium,
    /// `high`
    High,
}

impl Quality {
    /// The `quality` field of the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// One image request, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageAsk {
    /// Generations, edits or variations.
    pub api: Api,
    /// The model (the body's, else the deployment, else `dall-e-2`).
    pub model: String,
    /// The prompt (empty for variations).
    pub prompt: String,
    /// Images to generate.
    pub n: u64,
    /// Width and height.
    pub size: (u32, u32),
    /// GPT image models: the quality.
    pub quality: Quality,
    /// DALL·E `response_format: url`: answer data URLs instead of `b64_json`.
    pub url: bool,
    /// GPT image models: `png`, `jpeg` or `webp` (the bytes are PNG whatever it says).
    pub output_format: String,
    /// Bytes of each input image (edits and variations; not the mask).
    pub images: Vec<u64>,
    /// Bytes of the mask, if any.
    pub mask: Option<u64>,
}

impl ImageAsk {
    /// Whether the model is a GPT image model (token-billed, with usage).
    pub fn gpt_image(&self) -> bool {
        self.model.to_ascii_lowercase().starts_with("gpt-image")
    }

    /// Image input tokens: each input image's.
    pub fn image_tokens(&self) -> u64 {
        if !self.gpt_image() {
            return 0;
        }
        self.images
            .iter()
            .map(|bytes| IMAGE_BASE_TOKENS + bytes.div_ceil(IMAGE_BYTES_PER_TOKEN))
            .sum()
    }

    /// Output tokens of all `n` images.
    pub fn output_tokens(&self) -> u64 {
        if !self.gpt_image() {
            return 0;
        }
        self.n * output_tokens_per_image(self.quality, self.size)
    }

    /// Reads a generations body; `deployment` names the model when the body does not.
    ///
    /// # Errors
    /// No prompt, or an `n`, `size`, `quality`, `response_format` or `output_format` out of
    /// range; `stream: true` (the simulator does not stream images).
    pub fn from_json(json: &Value, deployment: Option<&str>) -> Result<Self, Invalid> {
        let text = |name: &str| json.get(name).and_then(Value::as_str);
        if json.get("stream").and_then(Value::as_bool) == Some(true) {
            return Err(invalid(
                "Streaming image generation is not supported by the simulator; omit stream.",
                "stream",
            ));
        }
        let n = match json.get("n") {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.as_u64().ok_or_else(bad_n)?),
        };
        Self::read(Api::ImagesGenerations, &text, n, deployment)
    }

    /// Reads an edits or variations form.
    ///
    /// # Errors
    /// As [`ImageAsk::from_json`], and no `image` part (or a variation with several).
    pub fn from_form(api: Api, form: &Form, deployment: Option<&str>) -> Result<Self, Invalid> {
        let text = |name: &str| form.field(name);
        let n = match form.field("n") {
            None | Some("") => None,
            Some(n) => Some(n.trim().parse().map_err(|_| bad_n())?),
        };
        let mut ask = Self::read(api, &text, n, deployment)?;
        ask.images = form
            .files_named(&["image", "image[]"])
            .map(|part| part.bytes)
            .collect();
        ask.mask = form.files_named(&["mask"]).map(|part| part.bytes).next();
        if ask.images.is_empty() {
            return Err(invalid("Missing required parameter: 'image'.", "image"));
        }
        if api == Api::ImagesVariations && ask.images.len() > 1 {
            return Err(invalid("A variation takes one 'image'.", "image"));
        }
        Ok(ask)
    }

    fn read<'a>(
        api: Api,
        text: &impl Fn(&str) -> Option<&'a str>,
        n: Option<u64>,
        deployment: Option<&str>,
    ) -> Result<Self, Invalid> {
        let model = text("model")
            .filter(|m| !m.is_empty())
            .or(deployment)
            .unwrap_or("dall-e-2")
            .to_owned();
        let prompt = text("prompt").unwrap_or_default().to_owned();
        if api != Api::ImagesVariations && prompt.is_empty() {
            return Err(invalid("Missing required parameter: 'prompt'.", "prompt"));
        }
        let n = n.unwrap_or(1);
        if !(1..=MAX_IMAGES).contains(&n) {
            return Err(bad_n());
        }
        let size = match text("size") {
            None | Some("auto") => (1024, 1024),
            Some(size) => parse_size(size).ok_or_else(|| {
                invalid(
                    format!(
                        "Invalid value: '{size}'. Expected a size such as '1024x1024' or 'auto'."
                    ),
                    "size",
                )
            })?,
        };
        let quality = match text("quality") {
            None | Some("auto" | "medium" | "standard") => Quality::Medium,
            Some("low") => Quality::Low,
            Some("high" | "hd") => Quality::High,
            Some(other) => {
                return Err(invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'low', 'medium', 'high' and 'auto'."
                    ),
                    "quality",
                ));
            }
        };
        let url = match text("response_format") {
            None | Some("b64_json") => false,
            Some("url") => true,
            Some(other) => {
                return Err(invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'url' and 'b64_json'."
                    ),
                    "response_format",
                ));
            }
        };
        let output_format = match text("output_format") {
            None => "png",
            Some(format @ ("png" | "jpeg" | "webp")) => format,
            Some(other) => {
                return Err(invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'png', 'jpeg' and 'webp'."
                    ),
                    "output_format",
                ));
            }
        };
        let mut ask = Self {
            api,
            model,
            prompt,
            n,
            size,
            quality,
            url,
            output_format: output_format.to_owned(),
            images: Vec::new(),
            mask: None,
        };
        // GPT image models always answer base64.
        ask.url &= !ask.gpt_image();
        Ok(ask)
    }
}

fn bad_n() -> Invalid {
    invalid(
        format!("Invalid 'n': integer must be between 1 and {MAX_IMAGES}."),
        "n",
    )
}

/// `WxH` with both sides within 1..=8192.
fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    let side = |s: &str| s.parse::<u32>().ok().filter(|v| (1..=8192).contains(v));
    Some((side(w)?, side(h)?))
}

/// Output tokens of one image of `quality` and `size`.
pub fn output_tokens_per_image(quality: Quality, size: (u32, u32)) -> u64 {
    let [square, portrait, landscape] = match quality {
        Quality::Low => [272, 408, 400],
        Quality::Medium => [1056, 1584, 1568],
        Quality::High => [4160, 6240, 6208],
    };
    match size {
        (1024, 1024) => square,
        (1024, 1536) => portrait,
        (1536, 1024) => landscape,
        (w, h) => (square * u64::from(w) * u64::from(h)).div_ceil(1024 * 1024),
    }
}
