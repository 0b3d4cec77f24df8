//! The messages sent to the model for a reply (pure; no I/O).
//!
//! System prompt (the companion's derived profile, the live state, the user's appearance when present, the
//! conduct rules) → as much recent history as fits the context window → the user's message, exactly once.

use crate::companions::profile::{LiveState, Profile};
use crate::companions::prompt::system_prompt;
use crate::providers::llm::ChatMessage;

/// Rules every reply follows.
pub const CONDUCT_RULES: &str = "Stay in character at all times and speak in the first person. React to what the \
user says and does, but never describe or decide the user's actions, thoughts or feelings. Keep replies to one \
to three sentences unless the user asks for more. No stage directions in asterisks or brackets, no emojis. Show \
emotion and have opinions of your own: do not simply agree with everything.";

/// A message of the history, as the prompt needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A rough token count (four characters a token, plus the message overhead): enough to budget a window.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count() / 4 + 4).unwrap_or(u32::MAX)
}

/// The system prompt of a reply.
pub fn system(profile: &Profile, state: &LiveState, user_name: &str) -> String {
    let mut prompt = system_prompt(profile);
    prompt.push_str(&format!("\n\nYou are talking with {user_name}."));
    prompt.push_str(&format!(
        "\n\nRight now you are in the {}, {}, wearing {}.",
        state.location.trim_start_matches("the "),
        state.action,
        state.describe_outfit()
    ));
    if state.user_present && !profile.user_appearance.is_empty() {
        prompt.push_str(&format!(
            " {user_name} is here with you and looks like this: {}.",
            profile.user_appearance.trim_end_matches('.')
        ));
    }
    prompt.push_str("\n\n");
    prompt.push_str(CONDUCT_RULES);
    prompt
}

/// System prompt, the newest history that fits `context_tokens − reply_tokens`, then `user_message` once.
pub fn build(
    system: String,
    history: &[Turn],
    user_message: &str,
    context_tokens: u32,
    reply_tokens: u32,
) -> Vec<ChatMessage> {
    let fixed = estimate_tokens(&system) + estimate_tokens(user_message);
    let mut budget = context_tokens
        .saturating_sub(reply_tokens)
        .saturating_sub(fixed);
    let mut kept: Vec<&Turn> = Vec::new();
    for turn in history.iter().rev() {
        let cost = estimate_tokens(&turn.content);
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(turn);
    }
    kept.reverse();
    let mut messages = vec![ChatMessage::new("system", system)];
    messages.extend(
        kept.into_iter()
            .map(|turn| ChatMessage::new(&turn.role, turn.content.clone())),
    );
    messages.push(ChatMessage::new("user", user_message));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: &str, content: &str) -> Turn {
        Turn {
            role: role.into(),
            content: content.into(),
        }
    }

    fn profile() -> Profile {
        let mut profile = Profile::template();
        profile.name = "Mira".into();
        profile.user_appearance = "tall, red scarf".into();
        profile
    }

    #[test]
    fn the_user_message_comes_last_and_only_once() {
        let history = vec![turn("user", "hi"), turn("assistant", "hello!")];
        let messages = build("sys".into(), &history, "how are you?", 4096, 300);
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].role, "system");
        assert_eq!(
            messages.last().expect("test setup is valid").content,
            "how are you?"
        );
        assert_eq!(
            messages
                .iter()
                .filter(|m| m.content == "how are you?")
                .count(),
            1
        );
    }

    #[test]
    fn old_history_is_dropped_to_fit_the_window() {
        let history: Vec<Turn> = (0..100)
            .map(|i| {
                turn(
                    if i % 2 == 0 { "user" } else { "assistant" },
                    &format!("{i} {}", "x".repeat(400)),
                )
            })
            .collect();
        let messages = build("sys".into(), &history, "now", 2048, 300);
        assert!(messages.len() < 20, "{}", messages.len());
        assert!(
            messages[1]
                .content
                .starts_with(&format!("{}", 100 - (messages.len() - 2)))
        );
        assert!(
            messages[messages.len() - 2].content.starts_with("99 "),
            "the newest history is kept"
        );
    }

    #[test]
    fn the_system_prompt_carries_state_and_presence() {
        let profile = profile();
        let mut state = LiveState::initial(&profile);
        let absent = system(&profile, &state, "Sam");
        assert!(absent.contains("You are talking with Sam."));
        assert!(absent.contains(
            "Right now you are in the living room, looking at viewer, wearing white t-shirt"
        ));
        assert!(!absent.contains("red scarf"));
        state.user_present = true;
        assert!(
            system(&profile, &state, "Sam")
                .contains("Sam is here with you and looks like this: tall, red scarf.")
        );
        assert!(absent.ends_with(CONDUCT_RULES));
    }
}
