//! The analysis call: asking the model how the scene changed, and reading its answer tolerantly (pure).
//!
//! The model answers JSON `{outfit, location, action, expression, lighting, visual_tags, is_user_present}`,
//! sometimes wrapped in prose or code fences, sometimes with trailing commas. Each value is validated and
//! bounded; anything missing or unusable keeps the previous value. The outfit is an inventory: it changes
//! only when the model reports a non-empty list.

use serde_json::Value;

use crate::companions::options;
use crate::companions::profile::{LiveState, WornItem};
use crate::providers::llm::ChatMessage;

const MAX_ITEMS: usize = 12;
const MAX_ITEM: usize = 100;
const MAX_PLACE: usize = 200;
const MAX_WORD: usize = 100;
const MAX_TAGS: usize = 20;
const MAX_TAG: usize = 40;

/// The messages of the analysis call over one exchange.
pub fn request(name: &str, state: &LiveState, user_message: &str, reply: &str) -> Vec<ChatMessage> {
    let categories: Vec<&str> = options::OUTFIT_CATEGORIES
        .iter()
        .map(|(key, _, _)| *key)
        .chain(["other"])
        .collect();
    let current = serde_json::json!({
        "outfit": state.outfit,
        "location": state.location,
        "action": state.action,
        "expression": state.expression,
        "lighting": state.lighting,
        "is_user_present": state.user_present,
    });
    let system = format!(
        "You keep track of the visible scene of {name}, a character in a chat. From the last exchange, work out \
         the scene now. Rules: the outfit is an inventory of what {name} wears; remove what was taken off, add \
         what was put on, keep the rest word for word; each item has a category ({}). The action is what {name} \
         is visibly doing now, in a few words, present tense; never the user's actions. The location changes only \
         when {name} moves. is_user_present is true only when the user is in the same place right now (not when \
         texting, calling or planning to meet). Answer with JSON only: {{\"outfit\": [{{\"category\": …, \
         \"item\": …}}], \"location\": …, \"action\": …, \"expression\": …, \"lighting\": …, \"visual_tags\": \
         [short image tags], \"is_user_present\": true|false}}",
        categories.join(", ")
    );
    let user = format!(
        "Scene before: {current}\n\nThe user said: {user_message}\n\n{name} answered: {reply}\n\nThe scene now, as JSON:"
    );
    vec![
        ChatMessage::new("system", system),
        ChatMessage::new("user", user),
    ]
}

/// The JSON object inside a model's answer: the answer itself, or from its first `{` to its last `}`, with
/// code fences, `//` comments and trailing commas removed and TRUE/FALSE lower-cased.
pub fn extract_json(answer: &str) -> Option<Value> {
    if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(answer.trim()) {
        return Some(value);
    }
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    if end <= start {
        return None;
    }
    let candidate = &answer[start..=end];
    let mut cleaned = String::with_capacity(candidate.len());
    for line in candidate.lines() {
        let line = match line.find("//") {
            // Only a comment when not inside a string: a URL-like "http://" stays.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        };
        cleaned.push_str(line);
        cleaned.push('\n');
    }
    let cleaned = cleaned
        .replace("TRUE", "true")
        .replace("FALSE", "false")
        .replace("True", "true")
        .replace("False", "false");
    let mut without_trailing = String::with_capacity(cleaned.len());
    let chars: Vec<char> = cleaned.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        without_trailing.push(*c);
    }
    match serde_json::from_str::<Value>(&without_trailing) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

fn text(value: &Value, max: usize) -> Option<String> {
    let text = value.as_str()?.trim();
    let text: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    let text = text.trim().trim_end_matches('.').trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn worn_item(value: &Value) -> Option<WornItem> {
    let (category, item) = match value {
        Value::String(_) => ("other".to_owned(), text(value, MAX_ITEM)?),
        Value::Object(map) => {
            let item = map
                .get("item")
                .or_else(|| map.get("description"))
                .and_then(|v| text(v, MAX_ITEM))?;
            let category = map
                .get("category")
                .and_then(|v| text(v, MAX_WORD))
                .map(|c| c.to_lowercase().replace([' ', '-'], "_"))
                .filter(|c| {
                    options::OUTFIT_CATEGORIES
                        .iter()
                        .any(|(key, _, _)| key == c)
                })
                .unwrap_or_else(|| "other".to_owned());
            (category, item)
        }
        _ => return None,
    };
    Some(WornItem {
        category,
        description: item,
    })
}

/// The state after the exchange: `previous` updated with every usable value of `answer`.
pub fn apply(previous: &LiveState, answer: &Value) -> LiveState {
    let mut next = previous.clone();
    if let Some(items) = answer.get("outfit").and_then(Value::as_array) {
        let outfit: Vec<WornItem> = items.iter().filter_map(worn_item).take(MAX_ITEMS).collect();
        if !outfit.is_empty() {
            next.outfit = outfit;
        }
    }
    if let Some(location) = answer.get("location").and_then(|v| text(v, MAX_PLACE)) {
        next.location = location;
    }
    if let Some(action) = answer
        .get("action")
        .or_else(|| answer.get("action_summary"))
        .and_then(|v| text(v, MAX_PLACE))
    {
        next.action = action;
    }
    if let Some(expression) = answer.get("expression").and_then(|v| text(v, MAX_WORD)) {
        next.expression = expression;
    }
    if let Some(lighting) = answer.get("lighting").and_then(|v| text(v, MAX_WORD)) {
        next.lighting = lighting;
    }
    let tags: Option<Vec<String>> = match answer.get("visual_tags") {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|v| text(v, MAX_TAG))
                .take(MAX_TAGS)
                .collect(),
        ),
        Some(Value::String(joined)) => Some(
            joined
                .split(',')
                .filter_map(|t| text(&Value::String(t.to_owned()), MAX_TAG))
                .take(MAX_TAGS)
                .collect(),
        ),
        _ => None,
    };
    if let Some(tags) = tags {
        next.visual_tags = tags;
    }
    match answer.get("is_user_present") {
        Some(Value::Bool(present)) => next.user_present = *present,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => next.user_present = true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => next.user_present = false,
        _ => {}
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> LiveState {
        LiveState {
            outfit: vec![WornItem {
                category: "top".into(),
                description: "white t-shirt".into(),
            }],
            location: "living room".into(),
            action: "reading".into(),
            expression: "calm".into(),
            lighting: "soft daylight".into(),
            visual_tags: vec![],
            user_present: false,
        }
    }

    #[test]
    fn json_is_found_inside_prose_and_fences_and_repaired() {
        let answer = "Sure! Here it is:\n```json\n{\n  \"location\": \"kitchen\", // moved\n  \"is_user_present\": TRUE,\n  \"visual_tags\": [\"apron\",],\n}\n```\nHope that helps.";
        let value = extract_json(answer).expect("found");
        assert_eq!(value["location"], "kitchen");
        assert_eq!(value["is_user_present"], true);
        assert_eq!(value["visual_tags"], json!(["apron"]));
        assert!(extract_json("no json here").is_none());
        assert!(extract_json("} backwards {").is_none());
        assert!(extract_json("{\"url\": \"http://x\"}").is_some());
    }

    #[test]
    fn usable_values_replace_and_the_rest_is_kept() {
        let next = apply(
            &state(),
            &json!({
                "location": "  the beach. ",
                "action": "",
                "expression": 42,
                "is_user_present": "true",
                "outfit": [{"category": "Full Body", "item": "red sundress"}, "straw hat", {"nope": 1}]
            }),
        );
        assert_eq!(next.location, "the beach");
        assert_eq!(next.action, "reading", "empty keeps the old value");
        assert_eq!(next.expression, "calm", "wrong type keeps the old value");
        assert!(next.user_present);
        assert_eq!(next.outfit.len(), 2);
        assert_eq!(next.outfit[0].category, "full_body");
        assert_eq!(next.outfit[1].category, "other");
    }

    #[test]
    fn an_empty_or_missing_outfit_keeps_the_inventory() {
        assert_eq!(
            apply(&state(), &json!({"outfit": []})).outfit,
            state().outfit
        );
        assert_eq!(apply(&state(), &json!({})).outfit, state().outfit);
    }

    #[test]
    fn values_are_bounded() {
        let long = "x".repeat(5000);
        let tags: Vec<String> = (0..50).map(|i| format!("tag{i}")).collect();
        let next = apply(&state(), &json!({"location": long, "visual_tags": tags}));
        assert_eq!(next.location.chars().count(), MAX_PLACE);
        assert_eq!(next.visual_tags.len(), MAX_TAGS);
    }

    #[test]
    fn the_request_shows_the_scene_and_the_exchange() {
        let messages = request("Mira", &state(), "let's go swim", "Race you to the water!");
        assert_eq!(messages.len(), 2);
        assert!(messages[0].content.contains("JSON only"));
        assert!(messages[1].content.contains("white t-shirt"));
        assert!(messages[1].content.contains("Race you to the water!"));
    }
}
