//! An outfit: one optional garment per body category, as the profile stores it, and as the list of things worn
//! that the live state starts from.

use serde::{Deserialize, Serialize};

use super::WornItem;
use crate::companions::options;

/// One garment of an outfit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Garment {
    /// A key of the category's garment list.
    pub item: String,
    /// A key of [`options::COLOURS`], if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
}

/// What is worn, one garment per category at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outfit {
    /// Jacket, hoodie …
    pub outerwear: Option<Garment>,
    /// Shirt, blouse …
    pub top: Option<Garment>,
    /// Jeans, skirt …
    pub bottom: Option<Garment>,
    /// Dress, jumpsuit …
    pub full_body: Option<Garment>,
    /// Bra …
    pub underwear_top: Option<Garment>,
    /// Panties, boxers …
    pub underwear_bottom: Option<Garment>,
    /// Socks, tights …
    pub legwear: Option<Garment>,
    /// Shoes.
    pub footwear: Option<Garment>,
}

impl Outfit {
    /// `(category, garment)` in wearing order.
    pub fn items(&self) -> Vec<(&'static str, &Garment)> {
        [
            ("outerwear", &self.outerwear),
            ("top", &self.top),
            ("bottom", &self.bottom),
            ("full_body", &self.full_body),
            ("underwear_top", &self.underwear_top),
            ("underwear_bottom", &self.underwear_bottom),
            ("legwear", &self.legwear),
            ("footwear", &self.footwear),
        ]
        .into_iter()
        .filter_map(|(category, garment)| garment.as_ref().map(|g| (category, g)))
        .collect()
    }

    /// The garment of a category.
    pub fn get(&self, category: &str) -> Option<&Garment> {
        self.items()
            .into_iter()
            .find(|(c, _)| *c == category)
            .map(|(_, g)| g)
    }

    /// The garments as worn items: "white t-shirt" (labels, wearing order).
    pub fn worn_items(&self) -> Vec<WornItem> {
        self.items()
            .into_iter()
            .map(|(category, garment)| {
                let item =
                    options::label(options::garments(category), &garment.item).to_lowercase();
                let description = match &garment.colour {
                    Some(colour) => format!(
                        "{} {item}",
                        options::label(options::COLOURS, colour).to_lowercase()
                    ),
                    None => item,
                };
                WornItem {
                    category: category.to_owned(),
                    description,
                }
            })
            .collect()
    }

    /// "white t-shirt, blue jeans, sneakers" (labels, wearing order), or "nothing chosen".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .worn_items()
            .into_iter()
            .map(|w| w.description)
            .collect();
        if parts.is_empty() {
            "nothing chosen".to_owned()
        } else {
            parts.join(", ")
        }
    }
}
