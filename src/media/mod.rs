//! Stored images: the storage backend, decoding and re-encoding uploads safely, making one picture through
//! the configured image backend (`generate`), the `images` table (its one owner, the gallery's queries
//! included), deleting files no row refers to, and serving images privately to their owner. Imports no
//! feature.
//!
//! Policy: an upload's type is decided by its content, never its name or declared type; decoding is bounded
//! (pixels and memory) against decompression bombs; every stored image is re-encoded (metadata stripped)
//! and stored under a content-derived key below its owner's prefix; images are served only to their owner,
//! with long-lived private caching. Replaced files are not deleted inline: the orphan cleanup takes them.

pub mod cleanup;
pub mod generate;
pub mod process;
pub mod routes;
pub mod storage;
pub mod store;

pub use process::{Crop, ImageError, Processed};
pub use storage::MediaStorage;
