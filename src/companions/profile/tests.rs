//! The profile's merge, normalisation and validation, and the live state it starts.

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
