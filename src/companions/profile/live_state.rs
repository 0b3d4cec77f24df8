//! The live state: what the companion wears, where it is and what it does right now — it follows the
//! conversation (the scene analysis updates it) and a memory reset returns it to [`LiveState::initial`].

use serde::{Deserialize, Serialize};

use super::Profile;

/// One thing worn right now: its body category (for layering in image prompts) and how it looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WornItem {
    /// One of the outfit categories, or `other` (accessories, anything unclassified).
    pub category: String,
    /// "red sundress", "white sneakers".
    pub description: String,
}

/// The state that follows the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// What is worn now, as an inventory.
    pub outfit: Vec<WornItem>,
    /// Where the companion is.
    pub location: String,
    /// What the companion is doing.
    pub action: String,
    /// Their facial expression.
    #[serde(default)]
    pub expression: String,
    /// The light of the scene.
    #[serde(default)]
    pub lighting: String,
    /// Extra tags describing the moment, for pictures.
    #[serde(default)]
    pub visual_tags: Vec<String>,
    /// Whether the user is in the same place as the companion right now.
    #[serde(default)]
    pub user_present: bool,
}

impl LiveState {
    /// The state of a new companion, and after a memory reset.
    pub fn initial(profile: &Profile) -> Self {
        Self {
            outfit: profile.outfit.worn_items(),
            location: "living room".to_owned(),
            action: "looking at viewer".to_owned(),
            expression: "smiling".to_owned(),
            lighting: "soft daylight".to_owned(),
            visual_tags: Vec::new(),
            user_present: false,
        }
    }

    /// "white t-shirt, blue jeans" or "nothing in particular".
    pub fn describe_outfit(&self) -> String {
        if self.outfit.is_empty() {
            "nothing in particular".to_owned()
        } else {
            self.outfit
                .iter()
                .map(|item| item.description.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}
