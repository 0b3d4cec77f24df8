//! The image prompt of a scene: a pure function of the companion's profile, its live state and the art
//! style's settings (snapshot-tested).
//!
//! Order: quality tags → characters (solo, or a couple when the user is present and described) → what
//! is visibly worn (after the layering filter) → the companion's look and the moment's tags → expression →
//! action → location → lighting. Empty groups leave no trace, and the whole is bounded in length.

use crate::companions::profile::{LiveState, Profile, WornItem};
use crate::companions::wardrobe;
use crate::config::{ImageSettings, StyleSettings};
use crate::providers::images::GenerationRequest;

/// The longest prompt sent (tags past it are dropped, least important last).
pub const MAX_PROMPT_CHARS: usize = 1_500;
/// The longest single free-text group (the user's appearance, a location).
const MAX_GROUP_CHARS: usize = 300;

const COMMON_NEGATIVE: &str = "ugly fingers, ugly hands, ugly face, easynegative, text, watermark, \
                               deformed, mutated, cropped, disfigured, non-detailed";
const COUPLE_NEGATIVE: &str = "extra limbs, extra arms, floating limbs, multiple views, 3people";
const SOLO_NEGATIVE: &str = "multiple views, multiple people, 2girls, 2boys";

/// A prompt pair ready for a backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScenePrompt {
    /// What to draw.
    pub prompt: String,
    /// What to avoid.
    pub negative: String,
}

/// The body part a garment covers, for the layering filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Outerwear,
    Top,
    Bottom,
    FullBody,
    UnderwearTop,
    UnderwearBottom,
    /// Lingerie sets and the like: hidden only when both top and bottom are covered.
    UnderwearBoth,
    /// Legwear, footwear, accessories: never hidden, never hiding.
    Other,
}

fn part_of(item: &WornItem) -> Part {
    let category = match item.category.as_str() {
        "other" | "" => {
            // Unclassified items are placed by their words.
            if wardrobe::is_underwear_set(&item.description) {
                return Part::UnderwearBoth;
            }
            wardrobe::category_of(&item.description).unwrap_or("other")
        }
        category => category,
    };
    match category {
        "outerwear" => Part::Outerwear,
        "top" => Part::Top,
        "bottom" => Part::Bottom,
        "full_body" => Part::FullBody,
        "underwear_top" => Part::UnderwearTop,
        "underwear_bottom" => Part::UnderwearBottom,
        _ => Part::Other,
    }
}

/// What can be seen: outerwear and tops hide an underwear top, bottoms hide an underwear bottom, full-body
/// garments hide both.
pub fn visible_outfit(outfit: &[WornItem]) -> Vec<&WornItem> {
    let parts: Vec<Part> = outfit.iter().map(part_of).collect();
    let top_covered = parts
        .iter()
        .any(|p| matches!(p, Part::Outerwear | Part::Top | Part::FullBody));
    let bottom_covered = parts
        .iter()
        .any(|p| matches!(p, Part::Bottom | Part::FullBody));
    outfit
        .iter()
        .zip(parts)
        .filter(|(_, part)| match part {
            Part::UnderwearTop => !top_covered,
            Part::UnderwearBottom => !bottom_covered,
            Part::UnderwearBoth => !(top_covered && bottom_covered),
            _ => true,
        })
        .map(|(item, _)| item)
        .collect()
}

/// One piece of free text made safe for a prompt: no control characters, no `<…>` extra-network syntax
/// (LoRA or embedding names must come from configuration, not from chat), whitespace collapsed, bounded.
fn clean(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| {
            if c.is_control() || c == '<' || c == '>' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = collapsed.trim_matches(|c: char| c == ',' || c.is_whitespace());
    trimmed.chars().take(MAX_GROUP_CHARS).collect()
}

fn gender_tag(profile: &Profile) -> &'static str {
    match profile.gender.as_str() {
        "male" => "1boy",
        "non_binary" => "1other",
        _ => "1girl",
    }
}

/// The positive and negative prompt of the companion's current scene.
pub fn scene(profile: &Profile, state: &LiveState, style: &StyleSettings) -> ScenePrompt {
    let user_appearance = clean(&profile.user_appearance);
    let couple = state.user_present && !user_appearance.is_empty();
    let gender = gender_tag(profile);

    let mut groups: Vec<Vec<String>> = Vec::new();
    // The operator's own text (it may name a LoRA or an embedding); only chat-derived text is cleaned.
    groups.push(vec![style.quality_tags.trim().to_owned()]);
    if couple {
        groups.push(vec![
            gender.to_owned(),
            "1other".to_owned(),
            "couple".to_owned(),
            "couple focus".to_owned(),
        ]);
        groups.push(vec![format!("({user_appearance})")]);
    } else {
        groups.push(vec![gender.to_owned(), "solo".to_owned()]);
    }
    let mut worn: Vec<String> = visible_outfit(&state.outfit)
        .into_iter()
        .map(|item| clean(&item.description))
        .collect();
    worn.retain(|item| !item.is_empty());
    if worn.is_empty() {
        worn.push("casual clothes".to_owned());
    }
    groups.push(worn);
    let mut look: Vec<String> = crate::companions::prompt::visual_tags(profile)
        .into_iter()
        .filter(|tag| !matches!(tag.as_str(), "1girl" | "1boy" | "1other"))
        .chain(state.visual_tags.iter().cloned())
        .map(|tag| clean(&tag))
        .collect();
    let mut seen = std::collections::HashSet::new();
    look.retain(|tag| seen.insert(tag.to_lowercase()));
    groups.push(look);
    for single in [
        &state.expression,
        &state.action,
        &state.location,
        &state.lighting,
    ] {
        groups.push(vec![clean(single)]);
    }

    ScenePrompt {
        prompt: join_bounded(groups, MAX_PROMPT_CHARS),
        negative: negative(style, couple, gender),
    }
}

/// The style's negative prompt plus what keeps a solo picture solo (or a couple picture whole).
pub fn negative(style: &StyleSettings, couple: bool, gender: &str) -> String {
    let mut parts = vec![style.negative.trim().to_owned(), COMMON_NEGATIVE.to_owned()];
    if couple {
        parts.push(COUPLE_NEGATIVE.to_owned());
    } else {
        parts.push(SOLO_NEGATIVE.to_owned());
        match gender {
            "1girl" => parts.push("1boy, male focus".to_owned()),
            "1boy" => parts.push("1girl, female focus".to_owned()),
            _ => {}
        }
    }
    parts.retain(|part| !part.is_empty());
    parts.join(", ")
}

/// Tags in order, joined by ", ", skipping empty ones and stopping before `limit` characters.
fn join_bounded(groups: Vec<Vec<String>>, limit: usize) -> String {
    let mut prompt = String::new();
    for tag in groups.into_iter().flatten() {
        if tag.is_empty() {
            continue;
        }
        let extra = if prompt.is_empty() { 0 } else { 2 } + tag.chars().count();
        if prompt.chars().count() + extra > limit {
            break;
        }
        if !prompt.is_empty() {
            prompt.push_str(", ");
        }
        prompt.push_str(&tag);
    }
    prompt
}

/// The generation request for a companion's current scene, with its art style's settings.
pub fn scene_request(
    profile: &Profile,
    state: &LiveState,
    settings: &ImageSettings,
) -> GenerationRequest {
    let style = settings.style(&profile.art_style);
    let prompt = scene(profile, state, style);
    GenerationRequest {
        prompt: prompt.prompt,
        negative: prompt.negative,
        width: style.width,
        height: style.height,
        steps: style.steps,
        cfg: style.cfg,
        sampler: style.sampler.clone(),
        scheduler: Some(style.scheduler.clone()).filter(|s| !s.is_empty()),
        seed: -1,
        checkpoint: style.checkpoint.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style() -> StyleSettings {
        StyleSettings {
            quality_tags: "masterpiece, best quality".into(),
            negative: "worst quality, 3d".into(),
            steps: 28,
            cfg: 6.0,
            sampler: "DPM++ 2M".into(),
            scheduler: "karras".into(),
            width: 832,
            height: 1216,
            checkpoint: None,
        }
    }

    fn worn(category: &str, description: &str) -> WornItem {
        WornItem {
            category: category.into(),
            description: description.into(),
        }
    }

    fn profile() -> Profile {
        let mut profile = Profile::template();
        profile.name = "Mia".into();
        profile
    }

    fn state(outfit: Vec<WornItem>) -> LiveState {
        LiveState {
            outfit,
            location: "cozy cafe".into(),
            action: "sipping coffee".into(),
            expression: "smiling".into(),
            lighting: "warm afternoon light".into(),
            visual_tags: vec!["looking at viewer".into()],
            user_present: false,
        }
    }

    fn shown(prompt: &ScenePrompt) -> String {
        format!("prompt: {}\nnegative: {}", prompt.prompt, prompt.negative)
    }

    fn visible(outfit: &[WornItem]) -> Vec<&str> {
        visible_outfit(outfit)
            .into_iter()
            .map(|item| item.description.as_str())
            .collect()
    }

    #[test]
    fn a_solo_scene() {
        let outfit = vec![
            worn("top", "white blouse"),
            worn("bottom", "pleated skirt"),
            worn("footwear", "loafers"),
        ];
        insta::assert_snapshot!(shown(&scene(&profile(), &state(outfit), &style())));
    }

    #[test]
    fn a_couple_scene_when_the_user_is_present_and_described() {
        let mut profile = profile();
        profile.user_appearance = "tall man, short black hair, glasses".into();
        let mut state = state(vec![worn("full_body", "red sundress")]);
        state.user_present = true;
        insta::assert_snapshot!(shown(&scene(&profile, &state, &style())));
    }

    #[test]
    fn a_present_user_without_a_description_stays_out_of_the_picture() {
        let mut state = state(vec![worn("top", "hoodie")]);
        state.user_present = true;
        let prompt = scene(&profile(), &state, &style());
        assert!(prompt.prompt.contains("1girl, solo"), "{}", prompt.prompt);
        assert!(!prompt.prompt.contains("couple"));
    }

    #[test]
    fn empty_fields_leave_no_empty_groups() {
        let mut state = state(Vec::new());
        state.location = String::new();
        state.action = "  ".into();
        state.expression = String::new();
        state.lighting = String::new();
        state.visual_tags = vec![String::new(), " , ".into()];
        let mut style = style();
        style.quality_tags = String::new();
        let prompt = scene(&profile(), &state, &style);
        insta::assert_snapshot!(shown(&prompt));
        assert!(!prompt.prompt.contains(", ,"));
        assert!(!prompt.prompt.contains("()"));
        assert!(!prompt.prompt.starts_with(','));
    }

    #[test]
    fn layering_outer_garments_hide_underwear_on_the_same_body_part() {
        insta::assert_debug_snapshot!(
            "layering",
            [
                visible(&[
                    worn("outerwear", "denim jacket"),
                    worn("underwear_top", "black bra"),
                    worn("underwear_bottom", "black panties"),
                ]),
                visible(&[
                    worn("top", "white t-shirt"),
                    worn("bottom", "blue jeans"),
                    worn("underwear_top", "sports bra"),
                    worn("underwear_bottom", "briefs"),
                ]),
                visible(&[
                    worn("bottom", "denim shorts"),
                    worn("underwear_top", "lace bra"),
                    worn("underwear_bottom", "lace panties"),
                ]),
                visible(&[
                    worn("full_body", "summer dress"),
                    worn("underwear_top", "bra"),
                    worn("underwear_bottom", "panties"),
                    worn("legwear", "stockings"),
                ]),
            ]
        );
    }

    #[test]
    fn unclassified_items_are_placed_by_whole_words() {
        // "laptop" is not a top and "bracelet" is not a bra.
        assert_eq!(
            visible(&[
                worn("other", "laptop bag"),
                worn("other", "silver bracelet"),
                worn("other", "strapless bra"),
            ]),
            ["laptop bag", "silver bracelet", "strapless bra"]
        );
        assert_eq!(
            visible(&[worn("other", "oversized hoodie"), worn("other", "red bra")]),
            ["oversized hoodie"]
        );
        assert_eq!(
            visible(&[worn("other", "silk lingerie"), worn("other", "long coat")]),
            ["silk lingerie", "long coat"],
            "a coat covers the top only"
        );
        assert_eq!(
            visible(&[
                worn("other", "silk lingerie"),
                worn("other", "evening gown")
            ]),
            ["evening gown"]
        );
    }

    #[test]
    fn the_prompt_is_bounded_and_free_of_extra_network_syntax() {
        let mut state = state(vec![worn("top", "shirt <lora:evil:1.0>")]);
        state.visual_tags = (0..500).map(|i| format!("tag number {i}")).collect();
        let prompt = scene(&profile(), &state, &style());
        assert!(prompt.prompt.chars().count() <= MAX_PROMPT_CHARS);
        assert!(!prompt.prompt.contains('<'), "{}", prompt.prompt);
        assert!(
            prompt
                .prompt
                .starts_with("masterpiece, best quality, 1girl, solo, shirt")
        );
    }

    #[test]
    fn solo_negatives_keep_other_people_out_and_couple_negatives_keep_limbs_right() {
        let solo = negative(&style(), false, "1girl");
        assert!(solo.starts_with("worst quality, 3d, ugly fingers"));
        assert!(solo.contains("multiple people") && solo.contains("1boy"));
        let couple = negative(&style(), true, "1girl");
        assert!(couple.contains("extra limbs") && !couple.contains("1boy"));
        assert!(!negative(&style(), false, "1other").contains("1boy"));
    }
}
