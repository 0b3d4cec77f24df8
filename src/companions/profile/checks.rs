//! Normalising and validating a profile: trimmed text, tags without duplicates, every field within its
//! bounds and its choice list, every problem keyed by its field path (`outfit.top`) for the form.

use super::{LONG_TEXT, MAX_AGE, MAX_TAG_LENGTH, MAX_TAGS, MIN_AGE, Profile, SHORT_TEXT};
use crate::companions::options::{self, Options};
use crate::web::forms::FormErrors;

impl Profile {
    /// Trims text, drops empty and duplicate tags (case-insensitively), turns empty colours into none.
    pub fn normalized(mut self) -> Self {
        for text in [
            &mut self.name,
            &mut self.art_style,
            &mut self.gender,
            &mut self.ethnicity,
            &mut self.skin_tone,
            &mut self.hair_style,
            &mut self.hair_modifier,
            &mut self.hair_texture,
            &mut self.hair_colour,
            &mut self.eye_colour,
            &mut self.body_type,
            &mut self.height,
            &mut self.occupation,
            &mut self.personality,
            &mut self.relationship,
            &mut self.extra_visual_tags,
            &mut self.extra_instruction,
            &mut self.user_appearance,
            &mut self.depth.speech_style,
            &mut self.depth.initiation_style,
            &mut self.depth.confidence,
            &mut self.depth.affection_style,
            &mut self.depth.humour,
            &mut self.depth.pace,
        ] {
            *text = text.trim().to_owned();
        }
        for tags in [
            &mut self.interests,
            &mut self.depth.speech_patterns,
            &mut self.depth.behaviour_traits,
            &mut self.depth.emotional_traits,
            &mut self.depth.vulnerabilities,
            &mut self.depth.quirks,
        ] {
            *tags = dedupe_tags(std::mem::take(tags));
        }
        for garment in [
            &mut self.outfit.outerwear,
            &mut self.outfit.top,
            &mut self.outfit.bottom,
            &mut self.outfit.full_body,
            &mut self.outfit.underwear_top,
            &mut self.outfit.underwear_bottom,
            &mut self.outfit.legwear,
            &mut self.outfit.footwear,
        ]
        .into_iter()
        .flatten()
        {
            garment.item = garment.item.trim().to_owned();
            garment.colour = garment
                .colour
                .take()
                .map(|colour| colour.trim().to_owned())
                .filter(|colour| !colour.is_empty());
        }
        self
    }

    /// Every problem, keyed by field path; `Ok` when there is none.
    pub fn validate(&self) -> Result<(), FormErrors> {
        let mut errors = FormErrors::new();
        required_text(&mut errors, "name", &self.name, SHORT_TEXT);
        if !(MIN_AGE..=MAX_AGE).contains(&self.age) {
            errors.add(
                "age",
                format!("Companions are adults: enter an age from {MIN_AGE} to {MAX_AGE}."),
            );
        }
        let strict: [(&str, &str, Options); 10] = [
            ("art_style", &self.art_style, options::ART_STYLES),
            ("gender", &self.gender, options::GENDERS),
            ("ethnicity", &self.ethnicity, options::ETHNICITIES),
            ("skin_tone", &self.skin_tone, options::SKIN_TONES),
            ("hair_style", &self.hair_style, options::HAIR_STYLES),
            (
                "hair_modifier",
                &self.hair_modifier,
                options::HAIR_MODIFIERS,
            ),
            ("hair_texture", &self.hair_texture, options::HAIR_TEXTURES),
            ("eye_colour", &self.eye_colour, options::EYE_COLOURS),
            ("body_type", &self.body_type, options::BODY_TYPES),
            ("height", &self.height, options::HEIGHTS),
        ];
        for (field, value, list) in strict {
            if !options::contains(list, value) {
                errors.add(field, one_of(list));
            }
        }
        for (field, value, list) in [
            (
                "depth.initiation_style",
                &self.depth.initiation_style,
                options::INITIATION_STYLES,
            ),
            (
                "depth.confidence",
                &self.depth.confidence,
                options::CONFIDENCE_LEVELS,
            ),
            (
                "depth.affection_style",
                &self.depth.affection_style,
                options::AFFECTION_STYLES,
            ),
            ("depth.humour", &self.depth.humour, options::HUMOUR_STYLES),
            ("depth.pace", &self.depth.pace, options::PACES),
        ] {
            if !value.is_empty() && !options::contains(list, value) {
                errors.add(field, one_of(list));
            }
        }
        for (field, value) in [
            ("hair_colour", &self.hair_colour),
            ("occupation", &self.occupation),
            ("personality", &self.personality),
            ("relationship", &self.relationship),
        ] {
            required_text(&mut errors, field, value, SHORT_TEXT);
        }
        optional_text(
            &mut errors,
            "depth.speech_style",
            &self.depth.speech_style,
            SHORT_TEXT,
        );
        for (field, value) in [
            ("extra_visual_tags", &self.extra_visual_tags),
            ("extra_instruction", &self.extra_instruction),
            ("user_appearance", &self.user_appearance),
        ] {
            optional_text(&mut errors, field, value, LONG_TEXT);
        }
        for (field, tags) in [
            ("interests", &self.interests),
            ("depth.speech_patterns", &self.depth.speech_patterns),
            ("depth.behaviour_traits", &self.depth.behaviour_traits),
            ("depth.emotional_traits", &self.depth.emotional_traits),
            ("depth.vulnerabilities", &self.depth.vulnerabilities),
            ("depth.quirks", &self.depth.quirks),
        ] {
            check_tags(&mut errors, field, tags);
        }
        for (category, _, items) in options::OUTFIT_CATEGORIES {
            let Some(garment) = self.outfit.get(category) else {
                continue;
            };
            let field = format!("outfit.{category}");
            if !options::contains(items, &garment.item) {
                errors.add(&field, one_of(items));
            }
            if let Some(colour) = &garment.colour
                && !options::contains(options::COLOURS, colour)
            {
                errors.add(&field, format!("Colour: {}", one_of(options::COLOURS)));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn dedupe_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.into_iter()
        .map(|tag| tag.trim().to_owned())
        .filter(|tag| !tag.is_empty())
        .filter(|tag| seen.insert(tag.to_lowercase()))
        .collect()
}

fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}

fn required_text(errors: &mut FormErrors, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        errors.add(field, "This field is required.");
    } else {
        optional_text(errors, field, value, max);
    }
}

fn optional_text(errors: &mut FormErrors, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        errors.add(field, format!("Use at most {max} characters."));
    }
    let single_line = max == SHORT_TEXT;
    if has_control(value) || (single_line && value.contains(['\n', '\r', '\t'])) {
        errors.add(
            field,
            "Remove control characters (such as NUL or line breaks).",
        );
    }
}

fn check_tags(errors: &mut FormErrors, field: &str, tags: &[String]) {
    if tags.len() > MAX_TAGS {
        errors.add(field, format!("Use at most {MAX_TAGS} tags."));
    }
    if tags.iter().any(|t| t.chars().count() > MAX_TAG_LENGTH) {
        errors.add(
            field,
            format!("Each tag has at most {MAX_TAG_LENGTH} characters."),
        );
    }
    if tags
        .iter()
        .any(|t| has_control(t) || t.contains(['\n', '\r', '\t']))
    {
        errors.add(field, "Remove control characters from the tags.");
    }
    if tags.iter().any(|t| t.contains(',')) {
        errors.add(
            field,
            "Tags cannot contain commas (a comma separates tags).",
        );
    }
}

fn one_of(list: Options) -> String {
    let keys: Vec<&str> = list.iter().map(|(k, _)| *k).collect();
    format!("Choose one of: {}.", keys.join(", "))
}
