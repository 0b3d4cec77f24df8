//! How large a request may be: one place for every body limit, so middleware and routes agree.

/// Hard cap on any request body; uploads are the largest legitimate bodies.
pub const MAX_REQUEST_BYTES: usize = 12 * 1024 * 1024;
/// What body extractors (forms, JSON) accept unless a route raises it.
pub const MAX_FORM_BYTES: usize = 256 * 1024;
/// The largest uploaded file accepted (portraits and other pictures).
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;
/// The largest multipart request (a file plus the form's text fields).
pub const MAX_MULTIPART_BYTES: usize = MAX_FILE_BYTES + 1024 * 1024;
/// How much of a multipart body the CSRF check reads to find the `csrf_token` field, which our forms send
/// first: a form whose token is not within this prefix is refused before the rest is read.
pub const MAX_CSRF_PREFIX_BYTES: usize = 64 * 1024;
