//! The standalone generator: `/generate` (a form that works without JavaScript) and
//! `POST /api/v1/images` (JSON, used by the page's script to show progress). Every parameter is bounded
//! here, on the server; the picture is saved to the gallery, optionally with a companion.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::companions;
use crate::config::ImageSettings;
use crate::error::AppError;
use crate::media::generate::{Destination, GenerateError, Generated};
use crate::media::store::Source;
use crate::providers::images::GenerationRequest;
use crate::state::AppState;
use crate::web::forms::FormErrors;
use crate::web::{CorrelationId, CurrentUser};

/// Longest prompt a person may write.
pub const MAX_PROMPT_CHARS: usize = 2_000;
/// Companions offered in the "keep with" list.
const COMPANION_CHOICES: u32 = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/generate", get(show_generator).post(submit_generator))
        .route("/api/v1/images", post(generate_json))
}

/// What the person typed, as text (numbers are checked here, with messages per field).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct GeneratorInput {
    /// What to draw.
    pub prompt: String,
    /// What to avoid.
    pub negative_prompt: String,
    /// `anime` or `realistic`.
    pub style: String,
    /// 256–2048, a multiple of 64.
    pub width: String,
    /// 256–2048, a multiple of 64.
    pub height: String,
    /// 1–150.
    pub steps: String,
    /// 1–30.
    pub cfg: String,
    /// -1 (random) or 0–4294967295.
    pub seed: String,
    /// One of the backend's samplers.
    pub sampler: String,
    /// A companion to keep the picture with; empty for none.
    pub companion_id: String,
    /// Ignored (the form's CSRF field).
    pub csrf_token: String,
}

impl GeneratorInput {
    /// The form as it first appears: the anime style's settings.
    pub fn defaults(settings: &ImageSettings) -> Self {
        let style = &settings.anime;
        Self {
            style: "anime".into(),
            width: style.width.to_string(),
            height: style.height.to_string(),
            steps: style.steps.to_string(),
            cfg: style.cfg.to_string(),
            seed: "-1".into(),
            sampler: style.sampler.clone(),
            ..Self::default()
        }
    }

    /// JSON values (numbers or strings) as the form's text fields.
    fn from_json(body: &HashMap<String, Value>) -> Self {
        let text = |name: &str| match body.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        Self {
            prompt: text("prompt"),
            negative_prompt: text("negative_prompt"),
            style: text("style"),
            width: text("width"),
            height: text("height"),
            steps: text("steps"),
            cfg: text("cfg"),
            seed: text("seed"),
            sampler: text("sampler"),
            companion_id: text("companion_id"),
            csrf_token: String::new(),
        }
    }
}

/// A checked request: what goes to the backend, and where the picture belongs.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The backend request (style tags and negatives included).
    pub request: GenerationRequest,
    /// The companion to keep it with (ownership still to be checked).
    pub companion: Option<Uuid>,
}

/// A whole number in range; an empty field takes the style's default.
fn whole(errors: &mut FormErrors, field: &str, raw: &str, min: i64, max: i64, default: i64) -> i64 {
    if raw.trim().is_empty() {
        return default;
    }
    match raw.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            errors.add(field, format!("Use a whole number from {min} to {max}."));
            default
        }
    }
}

fn free_text(errors: &mut FormErrors, field: &str, raw: &str, required: bool) -> String {
    let text = raw.trim();
    let length = text.chars().count();
    if required && length == 0 {
        errors.add(field, "Describe the picture.");
    } else if length > MAX_PROMPT_CHARS {
        errors.add(
            field,
            format!("Use at most {MAX_PROMPT_CHARS} characters (this has {length})."),
        );
    } else if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        errors.add(field, "Remove control characters.");
    }
    text.to_owned()
}

/// Checks every field at once (pure); `samplers` is the backend's list (empty when it takes none). Empty
/// numeric fields take the chosen style's settings.
pub fn check(
    input: &GeneratorInput,
    settings: &ImageSettings,
    samplers: &[String],
) -> Result<Checked, FormErrors> {
    let mut errors = FormErrors::new();
    let prompt = free_text(&mut errors, "prompt", &input.prompt, true);
    let negative = free_text(
        &mut errors,
        "negative_prompt",
        &input.negative_prompt,
        false,
    );
    let style_name = match input.style.trim() {
        "" | "anime" => "anime",
        "realistic" => "realistic",
        _ => {
            errors.add("style", "Choose anime or realistic.");
            "anime"
        }
    };
    let style = settings.style(style_name);
    let mut dimension = |field: &str, raw: &str, default: u32| {
        let value = whole(&mut errors, field, raw, 256, 2048, i64::from(default));
        if value % 64 != 0 {
            errors.add(field, "Use a multiple of 64 (e.g. 768, 832, 1024).");
        }
        u32::try_from(value).unwrap_or(default)
    };
    let width = dimension("width", &input.width, style.width);
    let height = dimension("height", &input.height, style.height);
    let steps = whole(
        &mut errors,
        "steps",
        &input.steps,
        1,
        150,
        i64::from(style.steps),
    );
    let cfg = match input.cfg.trim().parse::<f32>() {
        _ if input.cfg.trim().is_empty() => style.cfg,
        Ok(n) if n.is_finite() && (1.0..=30.0).contains(&n) => n,
        _ => {
            errors.add("cfg", "Use a number from 1 to 30.");
            style.cfg
        }
    };
    let seed = whole(
        &mut errors,
        "seed",
        &input.seed,
        -1,
        i64::from(u32::MAX),
        -1,
    );
    let sampler = input.sampler.trim();
    let sampler = if samplers.is_empty() || sampler.is_empty() {
        style.sampler.clone()
    } else if samplers.iter().any(|s| s == sampler) {
        sampler.to_owned()
    } else {
        errors.add("sampler", "Choose one of the listed samplers.");
        style.sampler.clone()
    };
    let companion = match input.companion_id.trim() {
        "" => None,
        raw => match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.add("companion_id", "Choose one of your companions, or none.");
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let join = |a: &str, b: &str| {
        [a.trim(), b.trim()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Checked {
        request: GenerationRequest {
            prompt: join(&style.quality_tags, &prompt),
            negative: join(&style.negative, &negative),
            width,
            height,
            steps: u32::try_from(steps).unwrap_or(style.steps),
            cfg,
            sampler,
            scheduler: Some(style.scheduler.clone()).filter(|s| !s.is_empty()),
            seed,
            checkpoint: style.checkpoint.clone(),
        },
        companion,
    })
}

/// A companion the picture can be kept with.
struct Choice {
    id: String,
    name: String,
}

/// The picture just made.
struct Made {
    url: String,
    width: u32,
    height: u32,
    gallery: String,
}

/// Renders: the generator form, its errors, and the picture just made.
#[derive(Template)]
#[template(path = "images/generate.html")]
struct GeneratorPage {
    page: crate::web::PageContext,
    input: GeneratorInput,
    errors: FormErrors,
    samplers: Vec<String>,
    takes_controls: bool,
    configured: bool,
    companions: Vec<Choice>,
    made: Option<Made>,
    failure: Option<String>,
}

async fn samplers(state: &AppState, correlation: &CorrelationId) -> Vec<String> {
    match state.imaging.client() {
        Some(client) => client.samplers(correlation.as_str()).await,
        None => Vec::new(),
    }
}

async fn page(
    state: &AppState,
    current: &CurrentUser,
    correlation: &CorrelationId,
    input: GeneratorInput,
    errors: FormErrors,
) -> Result<GeneratorPage, AppError> {
    let companions = companions::store::list(&state.db, current.user.id, COMPANION_CHOICES, 0)
        .await?
        .into_iter()
        .map(|c| Choice {
            id: c.id.to_string(),
            name: c.profile.0.name,
        })
        .collect();
    Ok(GeneratorPage {
        page: current.page("Generate a picture", "generate")?,
        input,
        errors,
        samplers: samplers(state, correlation).await,
        takes_controls: state
            .imaging
            .client()
            .is_some_and(|client| client.takes_sampling_controls()),
        configured: state.imaging.client().is_some(),
        companions,
        made: None,
        failure: None,
    })
}

async fn show_generator(
    State(state): State<AppState>,
    current: CurrentUser,
    correlation: CorrelationId,
) -> Result<Html<String>, AppError> {
    let input = GeneratorInput::defaults(&state.imaging.settings);
    let page = page(&state, &current, &correlation, input, FormErrors::new()).await?;
    Ok(Html(page.render()?))
}

/// Checks the input and the companion, counts the picture, generates it.
async fn make(
    state: &AppState,
    current: &CurrentUser,
    correlation: &CorrelationId,
    input: &GeneratorInput,
) -> Result<(Generated, Option<Uuid>), AppError> {
    if state.imaging.client().is_none() {
        return Err(GenerateError::NotConfigured.into());
    }
    let samplers = samplers(state, correlation).await;
    let checked =
        check(input, &state.imaging.settings, &samplers).map_err(FormErrors::into_error)?;
    if let Some(companion) = checked.companion
        && companions::store::find_owned(&state.db, current.user.id, companion)
            .await?
            .is_none()
    {
        let mut errors = FormErrors::new();
        errors.add("companion_id", "Choose one of your companions, or none.");
        return Err(errors.into_error());
    }
    super::may_picture(state, current).await?;
    let generated = state
        .imaging
        .generate(
            &checked.request,
            Destination {
                owner: current.user.id,
                companion: checked.companion,
                source: Source::Generator,
            },
            correlation.as_str(),
        )
        .await?;
    Ok((generated, checked.companion))
}

fn gallery_of(companion: Option<Uuid>) -> String {
    companion.map_or_else(
        || "/gallery/unassigned".to_owned(),
        |id| format!("/gallery/{id}"),
    )
}

async fn submit_generator(
    State(state): State<AppState>,
    current: CurrentUser,
    correlation: CorrelationId,
    Form(input): Form<GeneratorInput>,
) -> Result<Response, AppError> {
    match make(&state, &current, &correlation, &input).await {
        Ok((generated, companion)) => {
            let mut page = page(&state, &current, &correlation, input, FormErrors::new()).await?;
            page.made = Some(Made {
                url: format!("/media/{}", generated.image_id),
                width: generated.width,
                height: generated.height,
                gallery: gallery_of(companion),
            });
            Ok(Html(page.render()?).into_response())
        }
        Err(AppError::Validation { fields, .. }) => {
            let errors = FormErrors::from_fields(fields);
            let page = page(&state, &current, &correlation, input, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
        }
        Err(AppError::Unavailable { code, message }) => {
            let mut page = page(&state, &current, &correlation, input, FormErrors::new()).await?;
            page.failure = Some(format!("{message} (reference {})", correlation.as_str()));
            tracing::debug!(code, "generator failed");
            Ok((StatusCode::SERVICE_UNAVAILABLE, Html(page.render()?)).into_response())
        }
        Err(other) => Err(other),
    }
}

async fn generate_json(
    State(state): State<AppState>,
    current: CurrentUser,
    correlation: CorrelationId,
    body: Result<Json<HashMap<String, Value>>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|err| AppError::BadRequest(err.body_text()))?;
    let input = GeneratorInput::from_json(&body);
    let (generated, companion) = make(&state, &current, &correlation, &input).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": generated.image_id,
            "url": format!("/media/{}", generated.image_id),
            "width": generated.width,
            "height": generated.height,
            "companion_id": companion,
            "gallery_url": gallery_of(companion),
        })),
    )
        .into_response())
}

impl From<GenerateError> for AppError {
    fn from(err: GenerateError) -> Self {
        match err {
            GenerateError::Storage(err) => AppError::Internal(err),
            GenerateError::Database(err) => err.into(),
            other => AppError::Unavailable {
                code: other.code(),
                message: other.user_message(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ImageSettings {
        let config = crate::Config::from_vars(Vec::<(String, String)>::new()).expect("defaults");
        config.images
    }

    fn input() -> GeneratorInput {
        GeneratorInput {
            prompt: "a lighthouse at dusk".into(),
            ..GeneratorInput::defaults(&settings())
        }
    }

    fn errors_of(input: &GeneratorInput) -> Vec<String> {
        match check(
            input,
            &settings(),
            &["Euler a".to_owned(), "DPM++ 2M".to_owned()],
        ) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.keys().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn the_defaults_with_a_prompt_are_valid_and_carry_the_style() {
        let checked = check(&input(), &settings(), &[]).expect("valid");
        assert!(checked.request.prompt.ends_with(", a lighthouse at dusk"));
        assert!(checked.request.prompt.starts_with("(masterpiece:1.2)"));
        assert_eq!((checked.request.width, checked.request.height), (832, 1216));
        assert_eq!(checked.request.seed, -1);
        assert_eq!(checked.companion, None);
    }

    #[test]
    fn every_bound_is_enforced_and_reported_at_once() {
        let mut bad = input();
        bad.prompt = " ".into();
        bad.negative_prompt = "x".repeat(2001);
        bad.style = "oil".into();
        bad.width = "100".into();
        bad.height = "1000".into();
        bad.steps = "151".into();
        bad.cfg = "NaN".into();
        bad.seed = "4294967296".into();
        bad.sampler = "Made up".into();
        bad.companion_id = "nope".into();
        let mut keys = errors_of(&bad);
        keys.sort();
        assert_eq!(
            keys,
            [
                "cfg",
                "companion_id",
                "height",
                "negative_prompt",
                "prompt",
                "sampler",
                "seed",
                "steps",
                "style",
                "width"
            ]
        );
    }

    #[test]
    fn edges_of_the_ranges_are_accepted() {
        for (width, height, steps, cfg, seed) in [
            ("256", "2048", "1", "1", "-1"),
            ("2048", "256", "150", "30", "0"),
            ("1024", "1024", "28", "7.5", "4294967295"),
        ] {
            let mut edge = input();
            edge.width = width.into();
            edge.height = height.into();
            edge.steps = steps.into();
            edge.cfg = cfg.into();
            edge.seed = seed.into();
            edge.sampler = "Euler a".into();
            edge.prompt = "p".repeat(2000);
            assert_eq!(errors_of(&edge), Vec::<String>::new(), "{width}×{height}");
        }
        let mut off = input();
        off.seed = "-2".into();
        assert_eq!(errors_of(&off), ["seed"]);
    }
}
