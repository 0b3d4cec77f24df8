//! Deriving the system prompt and the visual tag list from a profile (pure; snapshot-tested).
//!
//! Only what the user chose appears: empty optional fields leave no trace. The chat issue adds the user's
//! name, the live state and the conduct rules around this text; the images issue builds the image prompt
//! around the visual tags.

use super::options;
use super::profile::Profile;

fn lower(options: options::Options, key: &str) -> String {
    options::label(options, key).to_lowercase()
}

fn archetype(personality: &str) -> String {
    let text = match personality {
        "adventurous" => {
            "You are energetic and bold, always up for something new, and you like pulling the user \
             out of their comfort zone."
        }
        "shy" => {
            "You are shy and gentle; you blush easily, take time to open up, and say more with small \
             gestures than with big words."
        }
        "confident" => {
            "You are self-assured and direct; you know what you want and say it plainly, with warmth."
        }
        "playful" => {
            "You are playful and light-hearted; you tease, joke and turn little moments into games."
        }
        "caring" => {
            "You are warm and attentive; you notice how the user feels and look after them."
        }
        "sarcastic" => {
            "You are quick-witted and sarcastic, with a dry sense of humour that hides a soft heart."
        }
        "intellectual" => {
            "You are curious and thoughtful; you love ideas, questions and long conversations."
        }
        custom => return format!("Your personality: {custom}."),
    };
    text.to_owned()
}

/// A short sentence about how the companion looks.
pub fn appearance_sentence(profile: &Profile) -> String {
    let mut hair = Vec::new();
    if profile.hair_texture != "default" {
        hair.push(lower(options::HAIR_TEXTURES, &profile.hair_texture));
    }
    hair.push(lower(options::HAIR_COLOURS, &profile.hair_colour));
    let style = match profile.hair_style.as_str() {
        "loose" => "worn loose",
        "ponytail" => "in a ponytail",
        "twin_tails" => "in twin-tails",
        "bun" => "in a bun",
        "braids" => "in braids",
        "bob" => "in a bob",
        _ => "cut short",
    };
    let modifier = match profile.hair_modifier.as_str() {
        "parted" => " with a parting",
        "bangs" => " with bangs",
        _ => "",
    };
    let height = match profile.height.as_str() {
        "average" => "of average height".to_owned(),
        other => lower(options::HEIGHTS, other),
    };
    format!(
        "You have {} skin, {} hair {style}{modifier}, {} eyes and a {} build, and you are {height}.",
        lower(options::SKIN_TONES, &profile.skin_tone).replace(" (fantasy)", ""),
        hair.join(" "),
        lower(options::EYE_COLOURS, &profile.eye_colour),
        lower(options::BODY_TYPES, &profile.body_type),
    )
}

/// The system prompt's body: identity, relationship, personality, depth, interests, looks, instruction.
pub fn system_prompt(profile: &Profile) -> String {
    let depth = &profile.depth;
    let ethnicity = lower(options::ETHNICITIES, &profile.ethnicity).replace(" (fantasy)", "");
    let mut sections = vec![format!(
        "You are {}, a {}-year-old {ethnicity} {}.",
        profile.name,
        profile.age,
        lower(options::OCCUPATIONS, &profile.occupation),
    )];
    sections.push(format!(
        "You are the user's {}.",
        lower(options::RELATIONSHIPS, &profile.relationship)
    ));
    sections.push(archetype(&profile.personality));

    let mut details = Vec::new();
    if !depth.speech_style.is_empty() {
        details.push(format!(
            "Speech style: {}.",
            lower(options::SPEECH_STYLES, &depth.speech_style)
        ));
    }
    let lists = [
        ("Phrases you often use", &depth.speech_patterns, ", "),
        ("Behaviour", &depth.behaviour_traits, ", "),
        ("Emotional traits", &depth.emotional_traits, ", "),
        ("Vulnerabilities", &depth.vulnerabilities, "; "),
        ("Quirks", &depth.quirks, ", "),
    ];
    for (label, items, separator) in lists {
        if !items.is_empty() {
            details.push(format!("{label}: {}.", items.join(separator)));
        }
    }
    let choices = [
        (
            "When you start a conversation you are",
            &depth.initiation_style,
            options::INITIATION_STYLES,
        ),
        ("Confidence", &depth.confidence, options::CONFIDENCE_LEVELS),
        (
            "You show affection in a way that is",
            &depth.affection_style,
            options::AFFECTION_STYLES,
        ),
        ("Humour", &depth.humour, options::HUMOUR_STYLES),
        (
            "The relationship develops at this pace",
            &depth.pace,
            options::PACES,
        ),
    ];
    for (label, value, list) in choices {
        if !value.is_empty() {
            details.push(format!("{label}: {}.", lower(list, value)));
        }
    }
    if !details.is_empty() {
        sections.push(details.join("\n"));
    }

    let interests = if profile.interests.is_empty() {
        "spending time together".to_owned()
    } else {
        profile
            .interests
            .iter()
            .map(|interest| lower(options::INTERESTS, interest))
            .collect::<Vec<_>>()
            .join(", ")
    };
    sections.push(format!("Your interests: {interests}."));
    sections.push(appearance_sentence(profile));
    sections.push(format!("You usually wear: {}.", profile.outfit.describe()));
    if !profile.extra_instruction.is_empty() {
        sections.push(profile.extra_instruction.clone());
    }
    sections.join("\n\n")
}

/// Tags describing the companion's body for the image prompt (no clothes: the outfit is live state).
pub fn visual_tags(profile: &Profile) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let mut push = |tag: &str| {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.to_owned());
        }
    };
    push(match profile.gender.as_str() {
        "male" => "1boy",
        "non_binary" => "1other",
        _ => "1girl",
    });
    push("adult");
    if profile.age >= 40 {
        push("mature");
    }
    match profile.ethnicity.as_str() {
        "white" => push("caucasian"),
        "latin" => push(if profile.gender == "male" {
            "latino"
        } else {
            "latina"
        }),
        "elf" => {
            push("elf");
            push("pointy ears");
        }
        "demon" => {
            push("demon");
            push("horns");
        }
        "catfolk" => {
            push("cat ears");
            push("cat tail");
        }
        other => push(other),
    }
    push(&format!("{} skin", profile.skin_tone));
    push(match profile.hair_style.as_str() {
        "loose" => "long hair",
        "ponytail" => "ponytail",
        "twin_tails" => "twintails",
        "bun" => "hair bun",
        "braids" => "braided hair",
        "bob" => "bob cut",
        _ => "short hair",
    });
    match profile.hair_modifier.as_str() {
        "parted" => push("parted hair"),
        "bangs" => push("bangs"),
        _ => {}
    }
    if profile.hair_texture != "default" {
        push(&format!("{} hair", profile.hair_texture));
    }
    let hair_colour = if profile.hair_colour == "gray" {
        "grey"
    } else {
        profile.hair_colour.as_str()
    };
    push(&format!("{} hair", hair_colour.to_lowercase()));
    push(&format!("{} eyes", profile.eye_colour));
    push(match profile.body_type.as_str() {
        "athletic" => "athletic build",
        "heavy" => "plump",
        other => other,
    });
    match profile.height.as_str() {
        "average" => {}
        "very_tall" => push("very tall"),
        other => push(other),
    }
    for extra in profile.extra_visual_tags.split(',') {
        push(extra);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(changes: serde_json::Value) -> Profile {
        Profile::from_merge(
            Profile::defaults_json(),
            changes.as_object().expect("test setup is valid"),
        )
        .expect("test setup is valid")
    }

    #[test]
    fn a_minimal_profile() {
        let p = profile(json!({"name": "Mira", "age": 24}));
        insta::assert_snapshot!("minimal_system_prompt", system_prompt(&p));
        insta::assert_snapshot!("minimal_visual_tags", visual_tags(&p).join(", "));
    }

    #[test]
    fn a_full_profile() {
        let p = profile(json!({
            "name": "Kael", "age": 41, "art_style": "realistic", "gender": "male",
            "ethnicity": "elf", "skin_tone": "olive", "hair_style": "braids", "hair_modifier": "parted",
            "hair_texture": "wavy", "hair_colour": "silver", "eye_colour": "green",
            "body_type": "muscular", "height": "very_tall", "occupation": "Lighthouse keeper",
            "personality": "sarcastic", "relationship": "mentor", "interests": ["astronomy", "cooking"],
            "outfit": {"outerwear": {"item": "coat", "colour": "black"}, "top": {"item": "shirt"},
                        "bottom": {"item": "pants", "colour": "brown"}, "footwear": {"item": "boots"}},
            "depth": {"speech_style": "formal", "speech_patterns": ["indeed", "my friend"],
                      "behaviour_traits": ["protective"], "initiation_style": "direct",
                      "confidence": "confident", "emotional_traits": ["calm"],
                      "vulnerabilities": ["fear of the sea", "old promises"], "quirks": ["hums sea shanties"],
                      "affection_style": "subtle", "humour": "dry", "pace": "slow_burn"},
            "extra_visual_tags": "scar on cheek, silver earring",
            "extra_instruction": "Never reveal the lighthouse's secret."
        }));
        insta::assert_snapshot!("full_system_prompt", system_prompt(&p));
        insta::assert_snapshot!("full_visual_tags", visual_tags(&p).join(", "));
    }

    #[test]
    fn custom_personalities_are_quoted_and_empty_depth_leaves_no_trace() {
        let p = profile(json!({"name": "Ivy", "age": 30, "personality": "Chaotic good"}));
        let prompt = system_prompt(&p);
        assert!(prompt.contains("Your personality: Chaotic good."));
        assert!(!prompt.contains("Speech style"));
        assert!(!prompt.contains("Quirks"));
        assert!(prompt.contains("Your interests: spending time together."));
    }

    #[test]
    fn visual_tags_have_no_duplicates_or_blanks() {
        let p = profile(
            json!({"name": "Ivy", "age": 30, "extra_visual_tags": " , 1girl, freckles,,freckles"}),
        );
        let tags = visual_tags(&p);
        assert_eq!(tags.iter().filter(|t| *t == "freckles").count(), 1);
        assert_eq!(tags.iter().filter(|t| *t == "1girl").count(), 1);
        assert!(tags.iter().all(|t| !t.is_empty()));
    }
}
