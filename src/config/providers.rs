//! The provider sections of the configuration: the language model, the image backend and the per-style
//! picture settings.

use std::time::Duration;

use super::reader::Reader;
use super::{ImageBackendConfig, LlmConfig, StyleSettings};

pub(super) fn load_llm(r: &mut Reader) -> Option<LlmConfig> {
    let base_url = r.http_url("LLM_BASE_URL");
    let model = r.get("LLM_MODEL");
    let analysis_model = r.get("LLM_ANALYSIS_MODEL");
    let api_key = r.secret("LLM_API_KEY");
    let temperature = r.float("LLM_TEMPERATURE", 0.9, 0.0, 2.0);
    let top_p = r.float("LLM_TOP_P", 0.9, 0.01, 1.0);
    let max_tokens = r.integer("LLM_MAX_TOKENS", 300, 1, 32_768);
    let context_tokens = r.integer("LLM_CONTEXT_TOKENS", 4096, 512, 2_000_000);
    let timeout_secs = r.integer("LLM_TIMEOUT_SECS", 120, 1, 3600);
    if max_tokens >= context_tokens {
        r.problem(
            "LLM_MAX_TOKENS",
            format!("must be smaller than LLM_CONTEXT_TOKENS ({context_tokens})"),
        );
    }
    match (base_url, model) {
        (Some(base_url), Some(model)) => Some(LlmConfig {
            base_url,
            api_key,
            analysis_model: analysis_model.unwrap_or_else(|| model.clone()),
            model,
            temperature,
            top_p,
            max_tokens,
            context_tokens,
            timeout: Duration::from_secs(u64::from(timeout_secs)),
        }),
        (Some(_), None) => {
            r.problem(
                "LLM_MODEL",
                "must be set when LLM_BASE_URL is set (the model name the endpoint serves)",
            );
            None
        }
        (None, Some(_)) if r.get("LLM_BASE_URL").is_none() => {
            r.problem(
                "LLM_BASE_URL",
                "must be set when LLM_MODEL is set, e.g. http://localhost:11434/v1",
            );
            None
        }
        _ => None,
    }
}

/// The variable names of one art style's settings.
pub(super) struct StyleVars {
    pub(super) quality_tags: &'static str,
    pub(super) negative: &'static str,
    pub(super) steps: &'static str,
    pub(super) cfg: &'static str,
    pub(super) sampler: &'static str,
    pub(super) scheduler: &'static str,
    pub(super) width: &'static str,
    pub(super) height: &'static str,
    pub(super) checkpoint: &'static str,
}

pub(super) const ANIME_VARS: StyleVars = StyleVars {
    quality_tags: "IMAGE_ANIME_QUALITY_TAGS",
    negative: "IMAGE_ANIME_NEGATIVE",
    steps: "IMAGE_ANIME_STEPS",
    cfg: "IMAGE_ANIME_CFG",
    sampler: "IMAGE_ANIME_SAMPLER",
    scheduler: "IMAGE_ANIME_SCHEDULER",
    width: "IMAGE_ANIME_WIDTH",
    height: "IMAGE_ANIME_HEIGHT",
    checkpoint: "IMAGE_ANIME_CHECKPOINT",
};

pub(super) const REALISTIC_VARS: StyleVars = StyleVars {
    quality_tags: "IMAGE_REALISTIC_QUALITY_TAGS",
    negative: "IMAGE_REALISTIC_NEGATIVE",
    steps: "IMAGE_REALISTIC_STEPS",
    cfg: "IMAGE_REALISTIC_CFG",
    sampler: "IMAGE_REALISTIC_SAMPLER",
    scheduler: "IMAGE_REALISTIC_SCHEDULER",
    width: "IMAGE_REALISTIC_WIDTH",
    height: "IMAGE_REALISTIC_HEIGHT",
    checkpoint: "IMAGE_REALISTIC_CHECKPOINT",
};

/// The original's checkpoint settings (without its adult-content tags and LoRA).
pub(super) struct StyleDefaults {
    quality_tags: &'static str,
    negative: &'static str,
    steps: u32,
    cfg: f32,
}

pub(super) const ANIME_DEFAULTS: StyleDefaults = StyleDefaults {
    quality_tags: "(masterpiece:1.2), (best quality:1.2), absurdres, highres, anime style, key visual, \
                   vibrant colors",
    negative: "(bad quality:1.2), (worst quality:1.2), neghands, monochrome, 3d, realistic, \
               photorealistic, long neck",
    steps: 28,
    cfg: 6.0,
};

pub(super) const REALISTIC_DEFAULTS: StyleDefaults = StyleDefaults {
    quality_tags: "(photorealistic:1.3), raw photo, 8k uhd, dslr, soft lighting, high quality, film grain",
    negative: "(bad quality:1.2), (worst quality:1.2), neghands, anime, cartoon, illustration, drawing, \
               painting",
    steps: 30,
    cfg: 7.0,
};

pub(super) fn load_style(
    r: &mut Reader,
    names: &StyleVars,
    defaults: &StyleDefaults,
) -> StyleSettings {
    let mut dimension = |name: &str, default: u32| {
        let value = r.integer(name, default, 256, 2048);
        if !value.is_multiple_of(64) {
            r.problem(name, format!("must be a multiple of 64, got {value}"));
            return default;
        }
        value
    };
    let width = dimension(names.width, 832);
    let height = dimension(names.height, 1216);
    StyleSettings {
        quality_tags: r
            .get(names.quality_tags)
            .unwrap_or_else(|| defaults.quality_tags.to_owned()),
        negative: r
            .get(names.negative)
            .unwrap_or_else(|| defaults.negative.to_owned()),
        steps: r.integer(names.steps, defaults.steps, 1, 150),
        cfg: r.float(names.cfg, defaults.cfg, 1.0, 30.0),
        sampler: r
            .get(names.sampler)
            .unwrap_or_else(|| "DPM++ 2M".to_owned()),
        scheduler: r
            .get(names.scheduler)
            .unwrap_or_else(|| "karras".to_owned()),
        width,
        height,
        checkpoint: r.get(names.checkpoint),
    }
}

pub(super) fn load_image_backend(r: &mut Reader) -> ImageBackendConfig {
    let sd_url = r.http_url("SD_API_URL");
    let image_url = r.http_url("IMAGE_API_URL");
    let image_key = r.secret("IMAGE_API_KEY");
    let image_model = r.get("IMAGE_MODEL");
    let default = if r.get("SD_API_URL").is_some() {
        "sdapi"
    } else {
        "none"
    };
    let choice = r
        .get("IMAGE_BACKEND")
        .unwrap_or_else(|| default.to_owned())
        .to_ascii_lowercase();
    match choice.as_str() {
        "none" => ImageBackendConfig::None,
        "sdapi" => match sd_url {
            Some(url) => ImageBackendConfig::SdApi { url },
            None => {
                if r.get("SD_API_URL").is_none() {
                    r.problem(
                        "SD_API_URL",
                        "must be set when IMAGE_BACKEND is sdapi, e.g. http://127.0.0.1:7860",
                    );
                }
                ImageBackendConfig::None
            }
        },
        "openai" => match image_url {
            Some(url) => ImageBackendConfig::OpenAi {
                url,
                api_key: image_key,
                model: image_model,
            },
            None => {
                if r.get("IMAGE_API_URL").is_none() {
                    r.problem(
                        "IMAGE_API_URL",
                        "must be set when IMAGE_BACKEND is openai, e.g. https://api.openai.com/v1",
                    );
                }
                ImageBackendConfig::None
            }
        },
        other => {
            r.problem(
                "IMAGE_BACKEND",
                format!("must be sdapi, openai or none, got {other:?}"),
            );
            ImageBackendConfig::None
        }
    }
}
