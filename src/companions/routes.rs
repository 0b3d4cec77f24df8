//! Companion pages: the list, the creation wizard, the edit page, and the delete/reset confirmations.

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::actions;
use super::api::PER_PAGE;
use super::form::{self, FormView};
use super::options;
use super::prompt;
use super::store::{self, CompanionRecord};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::PathId;
use crate::web::upload::{FormSubmission, MAX_MULTIPART_BYTES};
use crate::web::{CurrentUser, PageContext};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/companions", get(list_companions))
        .route(
            "/companions/new",
            get(show_new)
                .post(submit_new)
                .layer(DefaultBodyLimit::max(MAX_MULTIPART_BYTES)),
        )
        .route(
            "/companions/{id}/edit",
            get(show_edit)
                .post(submit_edit)
                .layer(DefaultBodyLimit::max(MAX_MULTIPART_BYTES)),
        )
        .route(
            "/companions/{id}/delete",
            get(confirm_delete).post(submit_delete),
        )
        .route("/companions/{id}/reset", get(confirm_reset))
}

/// One card of the list.
struct Card {
    id: String,
    name: String,
    initial: String,
    portrait_url: Option<String>,
    summary: String,
}

impl From<&CompanionRecord> for Card {
    fn from(record: &CompanionRecord) -> Self {
        let profile = &record.profile.0;
        Self {
            id: record.id.to_string(),
            name: profile.name.clone(),
            initial: profile
                .name
                .chars()
                .next()
                .unwrap_or('?')
                .to_uppercase()
                .collect(),
            portrait_url: record.portrait_image_id.map(|id| format!("/media/{id}")),
            summary: format!(
                "{} · {} · your {}",
                profile.age,
                options::label(options::OCCUPATIONS, &profile.occupation),
                options::label(options::RELATIONSHIPS, &profile.relationship).to_lowercase(),
            ),
        }
    }
}

/// Renders: the user's companions, newest first, 24 per page, or an invitation to create one.
#[derive(Template)]
#[template(path = "companions/list.html")]
struct ListPage {
    page: PageContext,
    cards: Vec<Card>,
    page_number: u32,
    has_previous: bool,
    has_next: bool,
    notice: Option<&'static str>,
    llm_configured: bool,
}

/// Renders: the creation wizard.
#[derive(Template)]
#[template(path = "companions/new.html")]
struct NewPage {
    page: PageContext,
    form: FormView,
    portrait_url: Option<String>,
    wizard: bool,
}

/// Renders: the edit page.
#[derive(Template)]
#[template(path = "companions/edit.html")]
struct EditPage {
    page: PageContext,
    id: String,
    name: String,
    form: FormView,
    portrait_url: Option<String>,
    wizard: bool,
    notice: Option<&'static str>,
    system_prompt: String,
    visual_tags: String,
    wearing: String,
    location: String,
    action: String,
}

/// Renders: a confirmation before deleting or resetting.
#[derive(Template)]
#[template(path = "companions/confirm.html")]
struct ConfirmPage {
    page: PageContext,
    heading: String,
    explanation: &'static str,
    action: String,
    button: &'static str,
    cancel: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    page: Option<u32>,
    created: Option<String>,
    deleted: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EditQuery {
    saved: Option<String>,
    reset: Option<String>,
}

async fn list_companions(
    State(state): State<AppState>,
    current: CurrentUser,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, AppError> {
    let page_number = query.page.unwrap_or(1).clamp(1, 100_000);
    let total = store::count(&state.db, current.user.id).await?;
    let records = store::list(
        &state.db,
        current.user.id,
        PER_PAGE,
        (page_number - 1) * PER_PAGE,
    )
    .await?;
    let notice = if query.created.is_some() {
        Some("Your companion is ready.")
    } else if query.deleted.is_some() {
        Some("The companion and everything about them were deleted.")
    } else {
        None
    };
    let page = ListPage {
        page: current.page("Companions", "companions")?,
        cards: records.iter().map(Card::from).collect(),
        page_number,
        has_previous: page_number > 1,
        has_next: i64::from(page_number) * i64::from(PER_PAGE) < total,
        notice,
        llm_configured: state.config.llm.is_some(),
    };
    Ok(Html(page.render()?))
}

async fn show_new(current: CurrentUser) -> Result<Html<String>, AppError> {
    let page = NewPage {
        page: current.page("New companion", "companions")?,
        form: FormView::blank(),
        portrait_url: None,
        wizard: true,
    };
    Ok(Html(page.render()?))
}

async fn submit_new(
    State(state): State<AppState>,
    current: CurrentUser,
    submission: FormSubmission,
) -> Result<Response, AppError> {
    let rerender = |form: FormView| -> Result<Response, AppError> {
        let page = NewPage {
            page: current.page("New companion", "companions")?,
            form,
            portrait_url: None,
            wizard: true,
        };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
    };
    let profile = match form::to_profile(&submission.fields) {
        Ok(profile) => profile,
        Err(errors) => return rerender(FormView::new(submission.fields, errors)),
    };
    let portrait = match submission.file {
        Some(file) => match actions::crop_from_fields(&submission.fields) {
            Ok(crop) => Some((file.bytes, crop)),
            Err(err) => return rerender_with(err, submission.fields, rerender),
        },
        None => None,
    };
    match actions::create(&state, &current.user, &profile, portrait).await {
        Ok(_) => Ok(Redirect::to("/companions?created=1").into_response()),
        Err(err) => rerender_with(err, submission.fields, rerender),
    }
}

/// Shows validation errors in the form; other errors answer as themselves.
fn rerender_with(
    err: AppError,
    fields: form::Fields,
    rerender: impl FnOnce(FormView) -> Result<Response, AppError>,
) -> Result<Response, AppError> {
    match err {
        AppError::Validation {
            fields: messages, ..
        } => {
            let mut errors = crate::web::forms::FormErrors::new();
            for (field, list) in messages {
                for message in list {
                    errors.add(&field, message);
                }
            }
            rerender(FormView::new(fields, errors))
        }
        other => Err(other),
    }
}

fn edit_page(
    current: &CurrentUser,
    record: &CompanionRecord,
    form: FormView,
    notice: Option<&'static str>,
) -> Result<EditPage, AppError> {
    let profile = &record.profile.0;
    let state = &record.live_state.0;
    Ok(EditPage {
        page: current.page(format!("Edit {}", profile.name), "companions")?,
        id: record.id.to_string(),
        name: profile.name.clone(),
        form,
        portrait_url: record.portrait_image_id.map(|id| format!("/media/{id}")),
        wizard: false,
        notice,
        system_prompt: prompt::system_prompt(profile),
        visual_tags: prompt::visual_tags(profile).join(", "),
        wearing: state.describe_outfit(),
        location: state.location.clone(),
        action: state.action.clone(),
    })
}

async fn show_edit(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    Query(query): Query<EditQuery>,
) -> Result<Html<String>, AppError> {
    let record = actions::find(&state, &current.user, id).await?;
    let notice = if query.saved.is_some() {
        Some("Saved.")
    } else if query.reset.is_some() {
        Some(
            "Memory wiped: the conversation is gone and the default outfit, place and action are back.",
        )
    } else {
        None
    };
    let form = FormView::new(form::from_profile(&record.profile.0), Default::default());
    Ok(Html(edit_page(&current, &record, form, notice)?.render()?))
}

async fn submit_edit(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    submission: FormSubmission,
) -> Result<Response, AppError> {
    let record = actions::find(&state, &current.user, id).await?;
    let rerender = |form: FormView| -> Result<Response, AppError> {
        let page = edit_page(&current, &record, form, None)?;
        Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
    };
    let profile = match form::to_profile(&submission.fields) {
        Ok(profile) => profile,
        Err(errors) => return rerender(FormView::new(submission.fields, errors)),
    };
    let processed = match submission.file {
        Some(file) => {
            let crop = match actions::crop_from_fields(&submission.fields) {
                Ok(crop) => crop,
                Err(err) => return rerender_with(err, submission.fields, rerender),
            };
            match actions::process_portrait(file.bytes, crop).await {
                Ok(processed) => Some(processed),
                Err(err) => return rerender_with(err, submission.fields, rerender),
            }
        }
        None => None,
    };
    actions::count_change(&state, &current.user).await?;
    if !store::update_profile(&state.db, current.user.id, id, &profile).await? {
        return Err(AppError::NotFound);
    }
    if let Some(processed) = processed {
        actions::store_portrait(&state, &current.user, id, processed).await?;
    }
    Ok(Redirect::to(&format!("/companions/{id}/edit?saved=1")).into_response())
}

async fn confirm_delete(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Html<String>, AppError> {
    let record = actions::find(&state, &current.user, id).await?;
    let name = &record.profile.0.name;
    let page = ConfirmPage {
        page: current.page(format!("Delete {name}"), "companions")?,
        heading: format!("Delete {name}?"),
        explanation: "This deletes the companion, the whole conversation and every picture of them. \
                      It cannot be undone.",
        action: format!("/companions/{}/delete", record.id),
        button: "Delete for good",
        cancel: "/companions".to_owned(),
    };
    Ok(Html(page.render()?))
}

async fn submit_delete(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Redirect, AppError> {
    actions::find(&state, &current.user, id).await?;
    actions::count_change(&state, &current.user).await?;
    actions::delete(&state, &current.user, id).await?;
    Ok(Redirect::to("/companions?deleted=1"))
}

async fn confirm_reset(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Html<String>, AppError> {
    let record = actions::find(&state, &current.user, id).await?;
    let name = &record.profile.0.name;
    let page = ConfirmPage {
        page: current.page(format!("Wipe {name}'s memory"), "companions")?,
        heading: format!("Wipe {name}'s memory?"),
        explanation: "This deletes the conversation and puts the default outfit, the living room and \
                      \"looking at viewer\" back. The profile and the portrait stay.",
        action: format!("/companions/{}/reset", record.id),
        button: "Wipe memory",
        cancel: format!("/companions/{}/edit", record.id),
    };
    Ok(Html(page.render()?))
}
