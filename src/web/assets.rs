//! Static assets (CSS, JavaScript, icons) embedded in the binary and served under content-hashed URLs.
//!
//! Policy: pages link `asset_url("css/app.css")` → `/static/css/app.<hash>.css`, served with
//! `Cache-Control: public, max-age=31536000, immutable`: a changed file gets a new URL, so browsers never
//! see a stale one. The plain name (`/static/js/app.js`) is also served, with `no-cache` and an ETag,
//! because ES modules import each other by relative path.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::AppError;

#[derive(RustEmbed)]
#[folder = "static/"]
struct StaticFiles;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "public, no-cache";

struct Asset {
    bytes: Cow<'static, [u8]>,
    content_type: HeaderValue,
    etag: HeaderValue,
}

struct Manifest {
    /// `css/app.css` → `css/app.1a2b3c4d5e.css`
    hashed_name: HashMap<String, String>,
    /// `css/app.1a2b3c4d5e.css` → `css/app.css`
    logical_name: HashMap<String, String>,
    files: HashMap<String, Asset>,
}

static MANIFEST: LazyLock<Manifest> = LazyLock::new(build_manifest);

fn build_manifest() -> Manifest {
    let mut manifest = Manifest {
        hashed_name: HashMap::new(),
        logical_name: HashMap::new(),
        files: HashMap::new(),
    };
    for name in StaticFiles::iter() {
        let Some(file) = StaticFiles::get(&name) else {
            continue;
        };
        let digest = file.metadata.sha256_hash();
        let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
        let hashed = with_hash(&name, &hash);
        let content_type = HeaderValue::from_str(file.metadata.mimetype())
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        let full_hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{full_hash}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        manifest
            .hashed_name
            .insert(name.to_string(), hashed.clone());
        manifest.logical_name.insert(hashed, name.to_string());
        manifest.files.insert(
            name.to_string(),
            Asset {
                bytes: file.data,
                content_type,
                etag,
            },
        );
    }
    manifest
}

/// `css/app.css` + `1a2b` → `css/app.1a2b.css`; a name without extension gets the hash appended.
fn with_hash(name: &str, hash: &str) -> String {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[file_start..].rfind('.') {
        Some(dot) if dot > 0 => {
            let dot = file_start + dot;
            format!("{}.{hash}{}", &name[..dot], &name[dot..])
        }
        _ => format!("{name}.{hash}"),
    }
}

/// The cache-busting URL of an embedded asset, e.g. `asset_url("css/app.css")`.
///
/// An unknown name is a programming error; it still yields a URL (which answers 404) rather than
/// failing the page.
pub fn asset_url(name: &str) -> String {
    match MANIFEST.hashed_name.get(name) {
        Some(hashed) => format!("/static/{hashed}"),
        None => {
            tracing::error!(
                asset = name,
                "template refers to an asset that does not exist"
            );
            format!("/static/{name}")
        }
    }
}

/// Serves `/static/{*path}`: hashed names as immutable, plain names with revalidation.
pub async fn serve_asset(
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let manifest = &*MANIFEST;
    let (logical, cache_control) = match manifest.logical_name.get(&path) {
        Some(logical) => (logical.as_str(), IMMUTABLE),
        None => (path.as_str(), REVALIDATE),
    };
    let asset = manifest.files.get(logical).ok_or(AppError::NotFound)?;
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (header::ETAG, asset.etag.clone()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == asset.etag)
        });
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        common,
        [(header::CONTENT_TYPE, asset.content_type.clone())],
        asset.bytes.clone(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_go_before_the_extension() {
        assert_eq!(with_hash("css/app.css", "ab12"), "css/app.ab12.css");
        assert_eq!(with_hash("js/lib.min.js", "ab12"), "js/lib.min.ab12.js");
        assert_eq!(with_hash("LICENSE", "ab12"), "LICENSE.ab12");
        assert_eq!(with_hash("icons/.hidden", "ab12"), "icons/.hidden.ab12");
        assert_eq!(with_hash("dir.v2/file", "ab12"), "dir.v2/file.ab12");
    }

    #[test]
    fn every_embedded_file_has_a_hashed_url() {
        let names: Vec<String> = StaticFiles::iter().map(|name| name.to_string()).collect();
        assert!(names.len() >= 5, "the static folder is embedded: {names:?}");
        let mut urls = std::collections::HashSet::new();
        for name in &names {
            let url = asset_url(name);
            assert_ne!(url, format!("/static/{name}"), "{name} has no hashed URL");
            let hashed = url.strip_prefix("/static/").expect("under /static/");
            // The hashed name leads back to the file, and its hash is that of the file's content.
            assert_eq!(MANIFEST.logical_name.get(hashed), Some(name), "{url}");
            let file = StaticFiles::get(name).expect("embedded");
            let hash: String = file.metadata.sha256_hash()[..5]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hashed, with_hash(name, &hash), "{name}");
            assert!(urls.insert(url), "two files share a URL");
        }
    }
}
