//! Companions: API and pages, exact round trips, validation, portraits, ownership.

mod api;
mod ownership;
mod pages;
mod portraits;

use serde_json::{Value, json};

/// A profile that sets every field, with custom values where custom values are allowed.
pub fn full_profile() -> Value {
    json!({
        "name": "Kael <the> \"Keeper\"", "age": 41, "art_style": "realistic", "gender": "male",
        "ethnicity": "elf", "skin_tone": "olive", "hair_style": "braids", "hair_modifier": "parted",
        "hair_texture": "wavy", "hair_colour": "silver & ash", "eye_colour": "green",
        "body_type": "muscular", "height": "very_tall", "occupation": "Lighthouse keeper",
        "personality": "sarcastic", "relationship": "Rival", "interests": ["astronomy", "Cooking", "<b>bold</b>"],
        "outfit": {"outerwear": {"item": "coat", "colour": "black"}, "top": {"item": "shirt"},
                    "bottom": null, "full_body": {"item": "overalls", "colour": "blue"},
                    "underwear_top": null, "underwear_bottom": {"item": "boxers", "colour": "gray"},
                    "legwear": {"item": "socks"}, "footwear": {"item": "boots", "colour": "brown"}},
        "depth": {"speech_style": "Old-fashioned", "speech_patterns": ["indeed", "my friend"],
                  "behaviour_traits": ["protective", "stubborn"], "initiation_style": "direct",
                  "confidence": "confident", "emotional_traits": ["calm"],
                  "vulnerabilities": ["the sea", "old promises"], "quirks": ["hums shanties"],
                  "affection_style": "subtle", "humour": "dry", "pace": "slow_burn"},
        "extra_visual_tags": "scar on cheek, silver earring",
        "extra_instruction": "Line one.\nLine two with <script>alert(1)</script>.",
        "user_appearance": "tall, red scarf"
    })
}
