//! The analysis call: asking the model how the scene changed, and reading its answer tolerantly (pure).
//!
//! The model is asked for JSON `{outfit, location, action, expression, lighting, visual_tags,
//! is_user_present}` (with `response_format: json_object` where the provider supports it), but models,
//! small local ones especially, answer in other shapes. Accepted: JSON alone, in a code fence or with prose
//! around it, repaired by `jsonrepair-rs` (comments, trailing commas, single quotes, Python's `True`/`None`,
//! a cut-off end — inside strings nothing is touched); `outfit` as a list of objects (`item`, `description`
//! or `name`, and a `category`), a list of strings, a comma-separated string, or an object of category →
//! garment; items without a known category are placed by their words ([`wardrobe`]), unknown → `other`;
//! `is_user_present` as a boolean, "true"/"false", "yes"/"no" or 1/0; other keys are ignored. Each value is
//! validated and bounded; anything missing or unusable keeps the previous value. The outfit is an
//! inventory: it changes only when the model reports a non-empty one.

use serde_json::Value;

use crate::companions::profile::{LiveState, WornItem};
use crate::companions::{options, wardrobe};
use crate::providers::llm::ChatMessage;

const MAX_ITEMS: usize = 12;
const MAX_ITEM: usize = 100;
const MAX_PLACE: usize = 200;
const MAX_WORD: usize = 100;
const MAX_TAGS: usize = 20;
const MAX_TAG: usize = 40;
/// The longest answer the repair parser is given.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

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

/// The JSON object inside a model's answer: the answer itself, the content of a code fence, or from its
/// first `{` to its last `}` (or to the end, when the answer was cut off), repaired where needed.
pub fn extract_json(answer: &str) -> Option<Value> {
    let answer = answer.trim();
    if answer.len() > MAX_ANSWER_BYTES {
        return None;
    }
    if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(answer) {
        return Some(value);
    }
    let fenced = fenced_block(answer);
    let braced = answer.find('{').map(|start| match answer.rfind('}') {
        Some(end) if end > start => &answer[start..=end],
        _ => &answer[start..],
    });
    [fenced, braced, Some(answer)]
        .into_iter()
        .flatten()
        .find_map(repaired_object)
}

/// The inside of the first ``` fence (with or without a language), when there is one.
fn fenced_block(answer: &str) -> Option<&str> {
    let start = answer.find("```")? + 3;
    let rest = &answer[start..];
    // Skip the language tag on the fence line ("json", "JSON", nothing).
    let body_start = rest.find('\n').map_or(0, |n| n + 1);
    let body = &rest[body_start..];
    Some(body.find("```").map_or(body, |end| &body[..end]))
}

/// `candidate` as a JSON object, repaired when it is not valid JSON as it stands.
fn repaired_object(candidate: &str) -> Option<Value> {
    let repaired = jsonrepair_rs::jsonrepair(candidate).ok()?;
    let object = match serde_json::from_str::<Value>(&repaired).ok()? {
        object @ Value::Object(_) => object,
        // Prose around an object can come back as an array of strings and the object.
        Value::Array(items) => items.into_iter().find(Value::is_object)?,
        _ => return None,
    };
    // An empty object says nothing (a stray brace repaired into `{}`).
    object
        .as_object()
        .is_some_and(|map| !map.is_empty())
        .then_some(object)
}

fn text(value: &Value, max: usize) -> Option<String> {
    let text = value.as_str()?.trim();
    let text: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    let text = text.trim().trim_end_matches('.').trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// A category we know: the model's (normalised), else the one the description's words say, else `other`.
fn category(given: Option<&Value>, description: &str) -> String {
    given
        .and_then(|v| text(v, MAX_WORD))
        .map(|c| c.to_lowercase().replace([' ', '-'], "_"))
        .filter(|c| {
            options::OUTFIT_CATEGORIES
                .iter()
                .any(|(key, _, _)| key == c)
        })
        .or_else(|| wardrobe::category_of(description).map(str::to_owned))
        .unwrap_or_else(|| "other".to_owned())
}

fn worn_item(value: &Value, category_hint: Option<&Value>) -> Option<WornItem> {
    let (given, description) = match value {
        Value::String(_) => (category_hint, text(value, MAX_ITEM)?),
        Value::Object(map) => {
            let description = ["item", "description", "name", "garment"]
                .iter()
                .find_map(|key| map.get(*key).and_then(|v| text(v, MAX_ITEM)))?;
            (map.get("category").or(category_hint), description)
        }
        _ => return None,
    };
    Some(WornItem {
        category: category(given, &description),
        description,
    })
}

/// The outfit in any of the shapes models use; empty when there is none.
fn outfit(value: &Value) -> Vec<WornItem> {
    let items: Vec<WornItem> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| worn_item(item, None))
            .collect(),
        Value::String(joined) => joined
            .split([',', ';', '\n'])
            .filter_map(|piece| worn_item(&Value::String(piece.to_owned()), None))
            .collect(),
        // {"top": "white shirt", "bottom": {"item": "jeans"}}: keys are unordered, so wearing order.
        Value::Object(map) => {
            let mut items: Vec<WornItem> = map
                .iter()
                .filter_map(|(key, item)| worn_item(item, Some(&Value::String(key.clone()))))
                .collect();
            items.sort_by_key(|item| {
                options::OUTFIT_CATEGORIES
                    .iter()
                    .position(|(key, _, _)| *key == item.category)
                    .unwrap_or(usize::MAX)
            });
            items
        }
        _ => Vec::new(),
    };
    items.into_iter().take(MAX_ITEMS).collect()
}

/// A yes/no as models write it.
fn yes_or_no(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(answer) => Some(*answer),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Some(true),
            "false" | "no" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The state after the exchange: `previous` updated with every usable value of `answer`.
pub fn apply(previous: &LiveState, answer: &Value) -> LiveState {
    let mut next = previous.clone();
    if let Some(value) = answer.get("outfit") {
        let outfit = outfit(value);
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
    if let Some(present) = answer.get("is_user_present").and_then(yes_or_no) {
        next.user_present = present;
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
    fn repairs_never_touch_the_text_inside_strings() {
        let value = extract_json(
            "{\"action\": \"whispers True love, FALSE alarm // not a comment\", \"is_user_present\": True,}",
        )
        .expect("repaired");
        assert_eq!(
            value["action"],
            "whispers True love, FALSE alarm // not a comment"
        );
        assert_eq!(value["is_user_present"], true);
    }

    #[test]
    fn prose_fences_single_quotes_and_a_cut_off_end_are_read() {
        let value =
            extract_json("The scene now: {\"location\": \"park\"} — that is all.").expect("found");
        assert_eq!(value["location"], "park");
        let value = extract_json("```\n{'location': 'bar', action: 'pouring a drink'}\n```")
            .expect("found");
        assert_eq!(value["action"], "pouring a drink");
        let value = extract_json("{\"location\": \"beach\", \"outfit\": [\"bikini\", \"sun hat\"")
            .expect("found");
        assert_eq!(value["outfit"], json!(["bikini", "sun hat"]));
        assert!(
            extract_json(&"[".repeat(100_000)).is_none(),
            "deep nesting is refused"
        );
        assert!(extract_json(&format!("{{\"a\": \"{}\"}}", "x".repeat(70_000))).is_none());
    }

    #[test]
    fn an_outfit_comes_in_many_shapes() {
        let expect = |answer: Value| -> Vec<(String, String)> {
            apply(&state(), &answer)
                .outfit
                .into_iter()
                .map(|item| (item.category, item.description))
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(c, d)| ((*c).to_owned(), (*d).to_owned()))
                .collect()
        };
        let wanted = pairs(&[
            ("top", "white blouse"),
            ("bottom", "black skirt"),
            ("other", "pearl necklace"),
        ]);
        assert_eq!(
            expect(json!({"outfit": "white blouse, black skirt, pearl necklace"})),
            wanted
        );
        assert_eq!(
            expect(json!({"outfit": ["white blouse", "black skirt", "pearl necklace"]})),
            wanted
        );
        assert_eq!(
            expect(
                json!({"outfit": [{"description": "white blouse"}, {"item": "black skirt", "category": "skirts"}, {"name": "pearl necklace"}]})
            ),
            wanted
        );
        assert_eq!(
            expect(
                json!({"outfit": {"top": "white blouse", "bottom": {"item": "black skirt"}, "jewellery": "pearl necklace"}})
            ),
            wanted
        );
        assert_eq!(
            expect(json!({"outfit": [{"category": "Full Body", "item": "red sundress"}]})),
            pairs(&[("full_body", "red sundress")])
        );
    }

    #[test]
    fn presence_is_read_from_yes_and_no() {
        for (answer, present) in [
            (json!("yes"), true),
            (json!("No"), false),
            (json!(1), true),
            (json!("FALSE"), false),
            (json!(true), true),
        ] {
            let mut before = state();
            before.user_present = !present;
            assert_eq!(
                apply(&before, &json!({"is_user_present": answer})).user_present,
                present,
                "{answer}"
            );
        }
        let mut before = state();
        before.user_present = true;
        assert!(
            apply(&before, &json!({"is_user_present": "maybe"})).user_present,
            "unclear keeps it"
        );
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
