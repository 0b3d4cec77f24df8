//! Who is signed in, as pages and handlers see it (a leaf: sessions produce it, page contexts show it).

use uuid::Uuid;

/// The signed-in user as pages need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    /// Account id.
    pub id: Uuid,
    /// Login name (lower-case).
    pub username: String,
    /// What companions call the user.
    pub display_name: String,
}
