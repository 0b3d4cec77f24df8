//! Pictures: the scene prompt, generation through the configured backend, the in-chat image step's
//! logic, the generator page, the gallery and the orphaned-file cleanup.

pub mod generate;
pub mod prompt;
