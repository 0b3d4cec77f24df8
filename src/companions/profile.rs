//! The structured companion profile: what is stored, how it is validated, and the live state (pure; no I/O).
//!
//! The profile is stored as one validated JSON document, exactly as entered, so editing round-trips; the
//! system prompt and visual tags are derived from it (see `prompt`), never parsed back out of prose.
//! Creating and patching share one path: start from a JSON document (the defaults, or the stored profile),
//! merge what the client sent, deserialize strictly, normalise, validate.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::options::{self, Options};
use crate::web::forms::FormErrors;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> Result<Profile, FormErrors> {
        Profile::from_merge(
            Profile::defaults_json(),
            body.as_object().expect("test setup is valid"),
        )
    }

    #[test]
    fn name_and_age_are_enough() {
        let profile = create(json!({"name": "Mira", "age": 24})).expect("test setup is valid");
        assert_eq!(profile.name, "Mira");
        assert_eq!(profile.art_style, "anime");
        assert_eq!(
            profile.outfit.describe(),
            "white t-shirt, blue jeans, white sneakers"
        );
    }

    #[test]
    fn minors_and_the_ancient_are_refused() {
        for age in [0, 17, 121, -5] {
            let errors = create(json!({"name": "X", "age": age})).unwrap_err();
            assert!(errors.has("age"), "{age}");
        }
        assert!(create(json!({"name": "X", "age": 18})).is_ok());
    }

    #[test]
    fn unknown_enum_values_are_refused_and_custom_presets_accepted() {
        let errors = create(json!({"name": "X", "age": 30, "eye_colour": "plaid"})).unwrap_err();
        assert!(errors.field("eye_colour")[0].starts_with("Choose one of: blue"));
        let profile = create(json!({"name": "X", "age": 30, "occupation": "Astronaut"}))
            .expect("test setup is valid");
        assert_eq!(profile.occupation, "Astronaut");
    }

    #[test]
    fn text_limits_and_control_characters() {
        let long = "x".repeat(SHORT_TEXT + 1);
        let errors =
            create(json!({"name": long, "age": 30, "extra_instruction": "a\u{0}b"})).unwrap_err();
        assert!(errors.has("name") && errors.has("extra_instruction"));
        let ok = create(json!({"name": "X", "age": 30, "extra_instruction": "line one\nline two"}));
        assert!(ok.is_ok(), "line breaks are fine in long text");
        assert!(
            create(json!({"name": "two\nlines", "age": 30}))
                .unwrap_err()
                .has("name")
        );
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let profile = create(json!({"name": "X", "age": 30,
            "interests": [" Music", "music", "", "Hiking"]}))
        .expect("test setup is valid");
        assert_eq!(profile.interests, vec!["Music", "Hiking"]);
        let many: Vec<String> = (0..21).map(|i| format!("tag{i}")).collect();
        assert!(
            create(json!({"name": "X", "age": 30, "interests": many}))
                .unwrap_err()
                .has("interests")
        );
        let long = vec!["x".repeat(41)];
        assert!(
            create(json!({"name": "X", "age": 30, "interests": long}))
                .unwrap_err()
                .has("interests")
        );
    }

    #[test]
    fn outfit_garments_must_belong_to_their_category() {
        let errors = create(json!({"name": "X", "age": 30,
            "outfit": {"top": {"item": "jeans"}, "bottom": {"item": "skirt", "colour": "chartreuse"}}}))
        .unwrap_err();
        assert!(errors.has("outfit.top") && errors.has("outfit.bottom"));
        let profile = create(json!({"name": "X", "age": 30,
            "outfit": {"top": null, "full_body": {"item": "dress", "colour": "red"}}}))
        .expect("test setup is valid");
        assert_eq!(
            profile.outfit.describe(),
            "blue jeans, red dress, white sneakers"
        );
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_their_field() {
        let errors = create(json!({"name": "X", "age": "thirty"})).unwrap_err();
        assert!(errors.has("age"));
        let errors = create(json!({"name": "X", "age": 30, "favourite_food": "x"})).unwrap_err();
        let message = errors
            .keys()
            .flat_map(|k| errors.field(k))
            .next()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("unknown field"), "{errors:?}");
        let errors =
            create(json!({"name": "X", "age": 30, "outfit": {"hat": {"item": "x"}}})).unwrap_err();
        assert!(errors.keys().any(|k| k.starts_with("outfit")), "{errors:?}");
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let original = create(json!({"name": "X", "age": 30, "interests": ["chess"],
            "depth": {"humour": "dry"}}))
        .expect("test setup is valid");
        let base = serde_json::to_value(&original).expect("test setup is valid");
        let patched = Profile::from_merge(
            base,
            json!({"age": 31, "depth": {"pace": "cautious"}})
                .as_object()
                .expect("test setup is valid"),
        )
        .expect("test setup is valid");
        assert_eq!(patched.age, 31);
        assert_eq!(patched.interests, vec!["chess"]);
        assert_eq!(patched.depth.humour, "dry");
        assert_eq!(patched.depth.pace, "cautious");
    }

    #[test]
    fn the_live_state_starts_in_the_default_outfit() {
        let profile = create(json!({"name": "X", "age": 30})).expect("test setup is valid");
        let state = LiveState::initial(&profile);
        assert_eq!(state.describe_outfit(), profile.outfit.describe());
        assert_eq!(state.outfit[0].category, "top");
        assert_eq!(state.location, "living room");
        assert_eq!(state.action, "looking at viewer");
    }
}
