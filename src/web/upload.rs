//! Reading a submitted form that may carry one file: urlencoded forms and multipart forms alike.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;

use crate::error::AppError;

pub use super::limits::{MAX_FILE_BYTES, MAX_MULTIPART_BYTES};
/// Longest text field in a multipart form.
const MAX_TEXT_FIELD_BYTES: usize = 64 * 1024;

/// An uploaded file.
#[derive(Debug, Clone)]
pub struct UploadedFile {
    /// The form field it came in.
    pub field: String,
    /// Its bytes (at most [`MAX_FILE_BYTES`]).
    pub bytes: Vec<u8>,
}

/// A submitted form: its text fields (the last value of a name wins) and at most one file.
#[derive(Debug, Clone, Default)]
pub struct FormSubmission {
    /// Text fields.
    pub fields: HashMap<String, String>,
    /// The file, when one was chosen.
    pub file: Option<UploadedFile>,
}

impl<S: Send + Sync> FromRequest<S> for FormSubmission {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_multipart = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("multipart/form-data"));
        if !is_multipart {
            let Form(pairs) = Form::<Vec<(String, String)>>::from_request(request, state)
                .await
                .map_err(|rejection| AppError::BadRequest(rejection.body_text()))?;
            return Ok(Self {
                fields: pairs.into_iter().collect(),
                file: None,
            });
        }
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|rejection| AppError::BadRequest(rejection.body_text()))?;
        let mut submission = Self::default();
        while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
            let name = field.name().unwrap_or("").to_owned();
            if field.file_name().is_some() {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if bytes.len() + chunk.len() > MAX_FILE_BYTES {
                        return Err(AppError::PayloadTooLarge(
                            "The file is larger than 5 MB. Choose a smaller image.".into(),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                // A file input left empty still sends a part, with no name and no bytes.
                if !bytes.is_empty() && submission.file.is_none() {
                    submission.file = Some(UploadedFile { field: name, bytes });
                }
            } else {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
                        return Err(AppError::PayloadTooLarge(format!(
                            "The field {name} is too long."
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(bytes).map_err(|_| {
                    AppError::BadRequest(format!("The field {name} is not valid UTF-8 text."))
                })?;
                submission.fields.insert(name, text);
            }
        }
        Ok(submission)
    }
}

fn malformed(err: axum::extract::multipart::MultipartError) -> AppError {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge("The upload is larger than this server accepts.".into())
    } else {
        AppError::BadRequest(format!("The form could not be read: {}", err.body_text()))
    }
}
