//! The companion form: HTML field names ⇄ profile JSON, and the view the form templates render.
//!
//! Field names are flat (`hair_colour`, `outfit_top`, `outfit_top_colour`, `depth_humour`); choices with
//! presets have a `<field>_custom` text box used when the select says `custom`; lists are comma-separated.
//! Errors are keyed by profile path (`outfit.top`, `depth.humour`), the same keys the JSON API reports.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::options::{self, Options};
use super::profile::{Garment, Profile};
use crate::web::forms::FormErrors;

/// Preset choices that also take custom text: `(field, presets)`.
pub const CHOICES_WITH_CUSTOM: &[(&str, Options)] = &[
    ("hair_colour", options::HAIR_COLOURS),
    ("occupation", options::OCCUPATIONS),
    ("personality", options::PERSONALITIES),
    ("relationship", options::RELATIONSHIPS),
    ("depth_speech_style", options::SPEECH_STYLES),
];

const STRICT_FIELDS: &[&str] = &[
    "art_style",
    "gender",
    "ethnicity",
    "skin_tone",
    "hair_style",
    "hair_modifier",
    "hair_texture",
    "eye_colour",
    "body_type",
    "height",
];

const DEPTH_CHOICES: &[&str] = &[
    "initiation_style",
    "confidence",
    "affection_style",
    "humour",
    "pace",
];
const DEPTH_LISTS: &[&str] = &[
    "speech_patterns",
    "behaviour_traits",
    "emotional_traits",
    "vulnerabilities",
    "quirks",
];
const LONG_TEXTS: &[&str] = &["extra_visual_tags", "extra_instruction", "user_appearance"];

/// Submitted text fields by name (the last value wins).
pub type Fields = HashMap<String, String>;

fn split_list(raw: &str) -> Vec<Value> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Value::String(s.to_owned()))
        .collect()
}

fn choice(fields: &Fields, field: &str) -> String {
    let selected = fields.get(field).map(String::as_str).unwrap_or("");
    if selected == "custom" {
        fields
            .get(&format!("{field}_custom"))
            .cloned()
            .unwrap_or_default()
    } else {
        selected.to_owned()
    }
}

/// Builds the profile document from form fields; an age that is not a number is reported here.
pub fn to_json(fields: &Fields) -> (Map<String, Value>, FormErrors) {
    let mut errors = FormErrors::new();
    let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let mut doc = Map::new();
    doc.insert("name".into(), json!(text("name")));
    let age = text("age");
    let age = match age.trim().parse::<i64>() {
        Ok(age) => age,
        Err(_) => {
            errors.add("age", "Enter the age as a whole number, 18 or more.");
            18
        }
    };
    doc.insert("age".into(), json!(age));
    for field in STRICT_FIELDS {
        doc.insert((*field).into(), json!(text(field)));
    }
    for field in ["hair_colour", "occupation", "personality", "relationship"] {
        doc.insert(field.into(), json!(choice(fields, field)));
    }
    doc.insert(
        "interests".into(),
        Value::Array(split_list(&text("interests"))),
    );
    let mut outfit = Map::new();
    for (category, _, _) in options::OUTFIT_CATEGORIES {
        let item = text(&format!("outfit_{category}"));
        let garment = if item.trim().is_empty() {
            Value::Null
        } else {
            let colour = text(&format!("outfit_{category}_colour"));
            let colour = if colour.trim().is_empty() {
                Value::Null
            } else {
                json!(colour)
            };
            json!({ "item": item, "colour": colour })
        };
        outfit.insert((*category).into(), garment);
    }
    doc.insert("outfit".into(), Value::Object(outfit));
    let mut depth = Map::new();
    depth.insert(
        "speech_style".into(),
        json!(choice(fields, "depth_speech_style")),
    );
    for field in DEPTH_CHOICES {
        depth.insert((*field).into(), json!(text(&format!("depth_{field}"))));
    }
    for field in DEPTH_LISTS {
        depth.insert(
            (*field).into(),
            Value::Array(split_list(&text(&format!("depth_{field}")))),
        );
    }
    doc.insert("depth".into(), Value::Object(depth));
    for field in LONG_TEXTS {
        doc.insert((*field).into(), json!(text(field)));
    }
    (doc, errors)
}

/// Parses a complete form into a validated profile (every problem at once).
pub fn to_profile(fields: &Fields) -> Result<Profile, FormErrors> {
    let (doc, mut errors) = to_json(fields);
    match Profile::from_merge(Profile::defaults_json(), &doc) {
        Ok(profile) if errors.is_empty() => Ok(profile),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// The form fields that show `profile` (the inverse of [`to_json`]).
pub fn from_profile(profile: &Profile) -> Fields {
    let mut fields = Fields::new();
    let mut set = |name: &str, value: &str| {
        fields.insert(name.to_owned(), value.to_owned());
    };
    set("name", &profile.name);
    set("age", &profile.age.to_string());
    for (name, value) in [
        ("art_style", &profile.art_style),
        ("gender", &profile.gender),
        ("ethnicity", &profile.ethnicity),
        ("skin_tone", &profile.skin_tone),
        ("hair_style", &profile.hair_style),
        ("hair_modifier", &profile.hair_modifier),
        ("hair_texture", &profile.hair_texture),
        ("eye_colour", &profile.eye_colour),
        ("body_type", &profile.body_type),
        ("height", &profile.height),
        ("depth_initiation_style", &profile.depth.initiation_style),
        ("depth_confidence", &profile.depth.confidence),
        ("depth_affection_style", &profile.depth.affection_style),
        ("depth_humour", &profile.depth.humour),
        ("depth_pace", &profile.depth.pace),
        ("extra_visual_tags", &profile.extra_visual_tags),
        ("extra_instruction", &profile.extra_instruction),
        ("user_appearance", &profile.user_appearance),
    ] {
        set(name, value);
    }
    for (name, value) in [
        ("hair_colour", &profile.hair_colour),
        ("occupation", &profile.occupation),
        ("personality", &profile.personality),
        ("relationship", &profile.relationship),
        ("depth_speech_style", &profile.depth.speech_style),
    ] {
        let presets = CHOICES_WITH_CUSTOM
            .iter()
            .find(|(field, _)| *field == name)
            .map_or(&[][..], |(_, presets)| *presets);
        if value.is_empty() || options::contains(presets, value) {
            set(name, value);
        } else {
            set(name, "custom");
            set(&format!("{name}_custom"), value);
        }
    }
    set("interests", &profile.interests.join(", "));
    for (name, list) in [
        ("depth_speech_patterns", &profile.depth.speech_patterns),
        ("depth_behaviour_traits", &profile.depth.behaviour_traits),
        ("depth_emotional_traits", &profile.depth.emotional_traits),
        ("depth_vulnerabilities", &profile.depth.vulnerabilities),
        ("depth_quirks", &profile.depth.quirks),
    ] {
        set(name, &list.join(", "));
    }
    for (category, _, _) in options::OUTFIT_CATEGORIES {
        if let Some(Garment { item, colour }) = profile.outfit.get(category) {
            set(&format!("outfit_{category}"), item);
            set(
                &format!("outfit_{category}_colour"),
                colour.as_deref().unwrap_or(""),
            );
        }
    }
    fields
}

/// What the form templates read: current values, errors, and the option lists.
pub struct FormView {
    fields: Fields,
    /// Problems per profile path.
    pub errors: FormErrors,
}

impl FormView {
    /// A form showing `fields` with `errors`.
    pub fn new(fields: Fields, errors: FormErrors) -> Self {
        Self { fields, errors }
    }

    /// A form for a new companion (the defaults).
    pub fn blank() -> Self {
        Self::new(from_profile(&Profile::template()), FormErrors::new())
    }

    /// The current value of a field.
    pub fn value(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// The custom text of a preset choice (`<name>_custom`).
    pub fn custom_value(&self, name: &str) -> &str {
        self.fields
            .get(&format!("{name}_custom"))
            .map_or("", String::as_str)
    }

    /// A profile path as an HTML id fragment (`outfit.top` → `outfit-top`).
    pub fn dom_id(&self, path: impl AsRef<str>) -> String {
        path.as_ref().replace('.', "-")
    }

    /// `a` + `b` + `c`, for building field names in templates.
    pub fn join3(&self, a: &str, b: &str, c: &str) -> String {
        format!("{a}{b}{c}")
    }

    /// One line about an art style.
    pub fn style_description(&self, style: &str) -> &'static str {
        match style {
            "anime" => "Illustrated, expressive, bright colours.",
            _ => "Photographic, with natural light and detail.",
        }
    }

    /// True when any field has an error.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Open the personality-depth section when it holds something or has errors.
    pub fn depth_open(&self) -> bool {
        self.fields
            .iter()
            .any(|(k, v)| k.starts_with("depth_") && !v.is_empty())
            || self.errors.keys().any(|k| k.starts_with("depth."))
    }

    /// Open the advanced section when it holds something or has errors.
    pub fn advanced_open(&self) -> bool {
        LONG_TEXTS
            .iter()
            .any(|field| !self.value(field).is_empty() || self.errors.has(field))
    }

    /// True when `key` is the selected option of `name`.
    pub fn selected(&self, name: impl AsRef<str>, key: &str) -> bool {
        self.value(name.as_ref()) == key
    }

    /// The options of a list by name, for templates.
    pub fn options(&self, list: impl AsRef<str>) -> Options {
        match list.as_ref() {
            "art_style" => options::ART_STYLES,
            "gender" => options::GENDERS,
            "ethnicity" => options::ETHNICITIES,
            "skin_tone" => options::SKIN_TONES,
            "hair_style" => options::HAIR_STYLES,
            "hair_modifier" => options::HAIR_MODIFIERS,
            "hair_texture" => options::HAIR_TEXTURES,
            "hair_colour" => options::HAIR_COLOURS,
            "eye_colour" => options::EYE_COLOURS,
            "body_type" => options::BODY_TYPES,
            "height" => options::HEIGHTS,
            "occupation" => options::OCCUPATIONS,
            "personality" => options::PERSONALITIES,
            "relationship" => options::RELATIONSHIPS,
            "interests" => options::INTERESTS,
            "depth_speech_style" => options::SPEECH_STYLES,
            "depth_initiation_style" => options::INITIATION_STYLES,
            "depth_confidence" => options::CONFIDENCE_LEVELS,
            "depth_affection_style" => options::AFFECTION_STYLES,
            "depth_humour" => options::HUMOUR_STYLES,
            "depth_pace" => options::PACES,
            "colours" => options::COLOURS,
            category => options::garments(category.trim_start_matches("outfit_")),
        }
    }

    /// The outfit categories: `(key, label)`.
    pub fn outfit_categories(&self) -> Vec<(&'static str, &'static str)> {
        options::OUTFIT_CATEGORIES
            .iter()
            .map(|(key, label, _)| (*key, *label))
            .collect()
    }

    /// The error messages of a profile path.
    pub fn errors_of(&self, path: impl AsRef<str>) -> &[String] {
        self.errors.field(path.as_ref())
    }

    /// True when a profile path has errors.
    pub fn has_error(&self, path: impl AsRef<str>) -> bool {
        self.errors.has(path.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_profile() -> Profile {
        let doc = json!({
            "name": "Kael", "age": 41, "art_style": "realistic", "gender": "male",
            "ethnicity": "elf", "skin_tone": "olive", "hair_style": "braids", "hair_modifier": "parted",
            "hair_texture": "wavy", "hair_colour": "silver", "eye_colour": "green",
            "body_type": "muscular", "height": "very_tall", "occupation": "Lighthouse keeper",
            "personality": "sarcastic", "relationship": "Rival", "interests": ["astronomy", "Cooking"],
            "outfit": {"outerwear": {"item": "coat", "colour": "black"}, "top": {"item": "shirt"},
                        "bottom": null, "full_body": {"item": "overalls", "colour": "blue"},
                        "footwear": {"item": "boots"}},
            "depth": {"speech_style": "Old-fashioned", "speech_patterns": ["indeed", "my friend"],
                      "behaviour_traits": ["protective"], "initiation_style": "direct",
                      "confidence": "confident", "emotional_traits": ["calm"],
                      "vulnerabilities": ["the sea"], "quirks": ["hums"],
                      "affection_style": "subtle", "humour": "dry", "pace": "slow_burn"},
            "extra_visual_tags": "scar on cheek",
            "extra_instruction": "Line one.\nLine two.",
            "user_appearance": "tall, red scarf"
        });
        Profile::from_merge(
            Profile::defaults_json(),
            doc.as_object().expect("test setup is valid"),
        )
        .expect("test setup is valid")
    }

    #[test]
    fn every_field_round_trips_through_the_form() {
        let profile = full_profile();
        let fields = from_profile(&profile);
        assert_eq!(fields["occupation"], "custom");
        assert_eq!(fields["occupation_custom"], "Lighthouse keeper");
        assert_eq!(fields["personality"], "sarcastic");
        assert_eq!(to_profile(&fields).expect("test setup is valid"), profile);
    }

    #[test]
    fn a_non_numeric_age_is_reported_with_the_other_problems() {
        let mut fields = from_profile(&full_profile());
        fields.insert("age".into(), "old".into());
        fields.insert("eye_colour".into(), "plaid".into());
        let errors = to_profile(&fields).unwrap_err();
        assert!(errors.field("age")[0].contains("whole number"));
        assert!(errors.has("eye_colour"));
    }

    #[test]
    fn the_blank_form_shows_the_defaults_without_a_name() {
        let view = FormView::blank();
        assert_eq!(view.value("name"), "");
        assert!(view.selected("art_style", "anime"));
        assert_eq!(view.value("outfit_top"), "t_shirt");
        assert_eq!(view.options("outfit_footwear").len(), 6);
    }
}
