//! The structured companion profile (pure; no I/O): what is stored, and how a document from a form or the
//! API becomes one.
//!
//! The profile is stored as one validated JSON document, exactly as entered, so editing round-trips; the
//! system prompt and visual tags are derived from it (see `prompt`), never parsed back out of prose.
//! Creating and patching share one path: start from a JSON document (the defaults, or the stored profile),
//! merge what the client sent, deserialize strictly, normalise, validate (`checks.rs`). The outfit a
//! companion starts in is `outfit.rs`; the state that follows the conversation, `live_state.rs`.

mod checks;
mod live_state;
mod outfit;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::web::forms::FormErrors;

pub use live_state::{LiveState, WornItem};
pub use outfit::{Garment, Outfit};

/// Short free-text fields (name, occupation, custom choices): at most this many characters.
pub const SHORT_TEXT: usize = 100;
/// Long free-text fields (instructions, appearance, visual tags): at most this many characters.
pub const LONG_TEXT: usize = 2000;
/// At most this many tags per list …
pub const MAX_TAGS: usize = 20;
/// … of at most this many characters each.
pub const MAX_TAG_LENGTH: usize = 40;
/// Companions are adults.
pub const MIN_AGE: i64 = 18;
/// Upper bound of the age field.
pub const MAX_AGE: i64 = 120;

/// The optional depth of a personality; empty values are left out of the prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Depth {
    /// How they talk (preset or custom).
    pub speech_style: String,
    /// Phrases they use.
    pub speech_patterns: Vec<String>,
    /// How they behave.
    pub behaviour_traits: Vec<String>,
    /// How they start conversations (preset key).
    pub initiation_style: String,
    /// How sure of themselves they are (preset key).
    pub confidence: String,
    /// Their feelings.
    pub emotional_traits: Vec<String>,
    /// What hurts them.
    pub vulnerabilities: Vec<String>,
    /// Their oddities.
    pub quirks: Vec<String>,
    /// How they show affection (preset key).
    pub affection_style: String,
    /// Their humour (preset key).
    pub humour: String,
    /// How fast the relationship develops (preset key).
    pub pace: String,
}

/// Everything the user says about a companion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Age in years (adults only).
    pub age: i64,
    /// `anime` or `realistic`.
    pub art_style: String,
    /// Gender presentation.
    pub gender: String,
    /// Ethnicity or fantasy species.
    pub ethnicity: String,
    /// Skin tone.
    pub skin_tone: String,
    /// Hair base style.
    pub hair_style: String,
    /// Hair modifier.
    pub hair_modifier: String,
    /// Hair texture.
    pub hair_texture: String,
    /// Hair colour (preset or custom).
    pub hair_colour: String,
    /// Eye colour.
    pub eye_colour: String,
    /// Body type.
    pub body_type: String,
    /// Height.
    pub height: String,
    /// Occupation (preset or custom).
    pub occupation: String,
    /// Personality archetype (preset or custom).
    pub personality: String,
    /// Relationship to the user (preset or custom).
    pub relationship: String,
    /// Interests (tags).
    pub interests: Vec<String>,
    /// Default outfit (worn again after a memory reset).
    pub outfit: Outfit,
    /// Optional personality depth.
    pub depth: Depth,
    /// Extra image tags.
    pub extra_visual_tags: String,
    /// Extra instruction appended to the system prompt.
    pub extra_instruction: String,
    /// How the user looks (used when the user is in the scene).
    pub user_appearance: String,
}

impl Profile {
    /// The profile every field not given on creation starts from (with an empty name).
    pub fn template() -> Self {
        let garment = |item: &str, colour: &str| {
            Some(Garment {
                item: item.to_owned(),
                colour: Some(colour.to_owned()),
            })
        };
        Self {
            name: String::new(),
            age: 25,
            art_style: "anime".into(),
            gender: "female".into(),
            ethnicity: "white".into(),
            skin_tone: "fair".into(),
            hair_style: "loose".into(),
            hair_modifier: "none".into(),
            hair_texture: "straight".into(),
            hair_colour: "brown".into(),
            eye_colour: "brown".into(),
            body_type: "slim".into(),
            height: "average".into(),
            occupation: "student".into(),
            personality: "playful".into(),
            relationship: "friend".into(),
            interests: Vec::new(),
            outfit: Outfit {
                top: garment("t_shirt", "white"),
                bottom: garment("jeans", "blue"),
                footwear: garment("sneakers", "white"),
                ..Outfit::default()
            },
            depth: Depth::default(),
            extra_visual_tags: String::new(),
            extra_instruction: String::new(),
            user_appearance: String::new(),
        }
    }

    /// [`Profile::template`] as a JSON document, the base that creation merges into.
    pub fn defaults_json() -> Value {
        serde_json::to_value(Self::template()).unwrap_or(Value::Null)
    }

    /// Merges `changes` (top-level fields replace, `outfit` and `depth` merge one level down) into `base`,
    /// then deserializes, normalises and validates. Errors are keyed by field path (`outfit.top`).
    pub fn from_merge(mut base: Value, changes: &Map<String, Value>) -> Result<Self, FormErrors> {
        let mut errors = FormErrors::new();
        if let Value::Object(base_map) = &mut base {
            for (key, value) in changes {
                match (key.as_str(), base_map.get_mut(key), value) {
                    ("outfit" | "depth", Some(Value::Object(existing)), Value::Object(update)) => {
                        for (k, v) in update {
                            existing.insert(k.clone(), v.clone());
                        }
                    }
                    _ => {
                        base_map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let profile: Profile = match serde_path_to_error::deserialize(base) {
            Ok(profile) => profile,
            Err(err) => {
                let path = err.path().to_string();
                let field = if path.is_empty() || path == "." {
                    "profile".to_owned()
                } else {
                    path
                };
                errors.add(&field, describe_serde_error(&err.into_inner().to_string()));
                return Err(errors);
            }
        };
        let profile = profile.normalized();
        profile.validate()?;
        Ok(profile)
    }
}

fn describe_serde_error(message: &str) -> String {
    // serde says e.g. "invalid type: string \"x\", expected i64 at line 1 column 9"; drop the position.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    if message.starts_with("unknown field") {
        format!("Not a profile field ({message}).")
    } else {
        format!("Wrong kind of value: {message}.")
    }
}
