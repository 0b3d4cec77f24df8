//! The messages sent to the model for a reply (pure; no I/O).
//!
//! System prompt (the companion's derived profile, the live state, the user's appearance when present, the
//! conduct rules) → as much recent history as fits the context window → the user's message, exactly once.
//!
//! Tokens are counted with OpenAI's `cl100k_base` BPE (the tables ship inside `tiktoken-rs`), plus 10 %
//! headroom and four tokens of message framing. The tokenizers of today's open models (Llama 3, Qwen,
//! Mistral's Tekken) are at least as efficient for every script, so the count errs high; for a model whose
//! tokenizer is less efficient, the provider's "context length exceeded" answer shortens the window once
//! ([`shortened_context`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{LazyLock, Mutex};

use crate::companions::profile::{LiveState, Profile};
use crate::companions::prompt::system_prompt;
use crate::providers::llm::{ChatMessage, ContextSizes};

/// Tokens of framing every message costs beyond its text (role, separators).
const MESSAGE_OVERHEAD: u32 = 4;

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
    /// Its [`estimate_tokens`], when stored with the message (counted here otherwise).
    pub tokens: Option<u32>,
}

/// The tokens a message with `text` costs: its `cl100k_base` tokens plus 10 %, plus the framing.
pub fn estimate_tokens(text: &str) -> u32 {
    with_headroom(bpe_tokens(text))
}

/// `text`'s `cl100k_base` tokens.
fn bpe_tokens(text: &str) -> u32 {
    let tokens = tiktoken_rs::cl100k_base_singleton()
        .encode_ordinary(text)
        .len();
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// A message's cost from its text's tokens: plus 10 %, plus the framing.
fn with_headroom(tokens: u32) -> u32 {
    tokens
        .saturating_add(tokens.div_ceil(10))
        .saturating_add(MESSAGE_OVERHEAD)
}

/// The tokens of character descriptions counted lately, by a hash of their text. A companion's description
/// changes only when its profile is edited, and counting it is most of the work of building a prompt
/// (the scene and the rules around it are counted each time: they are short). Emptied when full.
static CHARACTER_TOKENS: LazyLock<Mutex<HashMap<u64, u32>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Character descriptions whose counts are kept (a few bytes each).
const CHARACTER_TOKENS_KEPT: usize = 4096;

/// [`bpe_tokens`] of a character description, counted once while it is among the recent ones.
fn character_tokens(description: &str) -> u32 {
    let key = {
        let mut hasher = DefaultHasher::new();
        description.hash(&mut hasher);
        hasher.finish()
    };
    let known = CHARACTER_TOKENS
        .lock()
        .map(|counts| counts.get(&key).copied())
        .unwrap_or(None);
    if let Some(tokens) = known {
        return tokens;
    }
    let tokens = bpe_tokens(description);
    if let Ok(mut counts) = CHARACTER_TOKENS.lock() {
        if counts.len() >= CHARACTER_TOKENS_KEPT {
            counts.clear();
        }
        counts.insert(key, tokens);
    }
    tokens
}

/// Loads the tokenizer's tables (a fraction of a second), so the first reply does not wait for it.
pub fn warm_up_tokenizer() {
    let _ = estimate_tokens("warm up");
}

/// The estimated tokens of a prompt.
pub fn count_messages(messages: &[ChatMessage]) -> u32 {
    messages
        .iter()
        .map(|m| estimate_tokens(&m.content))
        .fold(0, u32::saturating_add)
}

/// The context to budget with after the provider refused a prompt of `sent` estimated tokens as too long.
/// When it named its window and its own count of our messages, the budget is scaled to its count (with 10 %
/// to spare); otherwise the room for history and prompt is halved.
pub fn shortened_context(context: u32, reply_tokens: u32, sent: u32, sizes: ContextSizes) -> u32 {
    let limit = sizes.limit.map_or(context, |limit| limit.min(context));
    let room = limit.saturating_sub(reply_tokens);
    let prompt_budget = match sizes.prompt {
        Some(counted) if counted > 0 => {
            (f64::from(room) * f64::from(sent) / f64::from(counted) * 0.9) as u32
        }
        _ => sent.min(room) / 2,
    };
    let shorter = reply_tokens.saturating_add(prompt_budget.min(room));
    // Always shorter than what failed.
    shorter.min(context.saturating_sub(1))
}

/// A system prompt and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPrompt {
    /// The text.
    pub text: String,
    /// Its [`estimate_tokens`] (up to a token or two: its parts are counted apart).
    pub tokens: u32,
}

impl SystemPrompt {
    /// A system prompt of `text`, counted whole.
    pub fn counted(text: impl Into<String>) -> Self {
        let text = text.into();
        let tokens = estimate_tokens(&text);
        Self { text, tokens }
    }
}

/// The system prompt of a reply: the character ([`system_prompt`], whose count is remembered), the scene
/// and the user, the conduct rules.
pub fn system(profile: &Profile, state: &LiveState, user_name: &str) -> SystemPrompt {
    let character = system_prompt(profile);
    let mut scene = format!("\n\nYou are talking with {user_name}.");
    scene.push_str(&format!(
        "\n\nRight now you are in the {}, {}, wearing {}.",
        state.location.trim_start_matches("the "),
        state.action,
        state.describe_outfit()
    ));
    if state.user_present && !profile.user_appearance.is_empty() {
        scene.push_str(&format!(
            " {user_name} is here with you and looks like this: {}.",
            profile.user_appearance.trim_end_matches('.')
        ));
    }
    scene.push_str("\n\n");
    static RULES_TOKENS: LazyLock<u32> = LazyLock::new(|| bpe_tokens(CONDUCT_RULES));
    let tokens = character_tokens(&character)
        .saturating_add(bpe_tokens(&scene))
        .saturating_add(*RULES_TOKENS);
    let mut text = character;
    text.push_str(&scene);
    text.push_str(CONDUCT_RULES);
    SystemPrompt {
        text,
        tokens: with_headroom(tokens),
    }
}

/// System prompt, the newest history that fits `context_tokens − reply_tokens`, then `user_message` once
/// (its stored count trusted like the history's).
pub fn build(
    system: SystemPrompt,
    history: &[Turn],
    user_message: &Turn,
    context_tokens: u32,
    reply_tokens: u32,
) -> Vec<ChatMessage> {
    let fixed = system.tokens.saturating_add(cost(user_message));
    let mut budget = context_tokens
        .saturating_sub(reply_tokens)
        .saturating_sub(fixed);
    let mut kept: Vec<&Turn> = Vec::new();
    for turn in history.iter().rev() {
        let cost = cost(turn);
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(turn);
    }
    kept.reverse();
    let mut messages = vec![ChatMessage::new("system", system.text)];
    messages.extend(
        kept.into_iter()
            .map(|turn| ChatMessage::new(&turn.role, turn.content.clone())),
    );
    messages.push(ChatMessage::new("user", user_message.content.clone()));
    messages
}

/// A turn's stored count, or its count now when none was stored.
fn cost(turn: &Turn) -> u32 {
    turn.tokens
        .unwrap_or_else(|| estimate_tokens(&turn.content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: &str, content: &str) -> Turn {
        Turn {
            role: role.into(),
            content: content.into(),
            tokens: None,
        }
    }

    fn profile() -> Profile {
        let mut profile = Profile::template();
        profile.name = "Mira".into();
        profile.user_appearance = "tall, red scarf".into();
        profile
    }

    #[test]
    fn a_stored_count_is_trusted_and_a_missing_one_is_counted() {
        let mut costly = turn("user", "short");
        costly.tokens = Some(10_000);
        let history = vec![costly, turn("assistant", "kept")];
        let messages = build(
            SystemPrompt::counted("sys"),
            &history,
            &turn("user", "next"),
            4096,
            300,
        );
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            contents,
            ["sys", "kept", "next"],
            "the stored cost, not the short text, decided"
        );
    }

    #[test]
    fn the_user_message_comes_last_and_only_once() {
        let history = vec![turn("user", "hi"), turn("assistant", "hello!")];
        let messages = build(
            SystemPrompt::counted("sys"),
            &history,
            &turn("user", "how are you?"),
            4096,
            300,
        );
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
                    &format!("{i} {}", "many words ".repeat(50)),
                )
            })
            .collect();
        let messages = build(
            SystemPrompt::counted("sys"),
            &history,
            &turn("user", "now"),
            2048,
            300,
        );
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
    fn tokens_are_counted_never_low_for_any_script() {
        // cl100k_base counts these exactly; the estimate adds headroom and framing on top.
        let english = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(estimate_tokens(english), 10 + 1 + 4);
        // Four characters a token would say 25 for 100 CJK characters; they are at least one token each.
        let japanese = "今日はとても良い天気ですね。".repeat(7);
        let chars = japanese.chars().count() as u32;
        assert!(
            estimate_tokens(&japanese) >= chars,
            "{} tokens for {chars} characters",
            estimate_tokens(&japanese)
        );
        let korean = "안녕하세요 만나서 반갑습니다".repeat(5);
        assert!(estimate_tokens(&korean) >= korean.chars().count() as u32 / 2);
        assert_eq!(estimate_tokens(""), MESSAGE_OVERHEAD);
    }

    #[test]
    fn a_cjk_history_is_trimmed_to_the_window() {
        // 50 turns of 400 Chinese characters: far more than a 4,096-token window holds.
        let history: Vec<Turn> = (0..50)
            .map(|i| {
                turn(
                    if i % 2 == 0 { "user" } else { "assistant" },
                    &"我们明天去公园散步吧".repeat(40),
                )
            })
            .collect();
        let messages = build(
            SystemPrompt::counted("sys"),
            &history,
            &turn("user", "好"),
            4096,
            300,
        );
        assert!(
            count_messages(&messages) <= 4096 - 300,
            "{}",
            count_messages(&messages)
        );
        assert!(messages.len() > 2, "some history still fits");
    }

    #[test]
    fn a_context_refusal_shortens_the_window() {
        let named = ContextSizes {
            limit: Some(4096),
            prompt: Some(5000),
        };
        // We estimated 4000 where the server counted 5000: our budget shrinks by that ratio, and 10 % more.
        let context = shortened_context(4096, 300, 4000, named);
        assert_eq!(context, 300 + (3796.0_f64 * 4000.0 / 5000.0 * 0.9) as u32);
        // A server that names nothing: half the room.
        assert_eq!(
            shortened_context(4096, 300, 3700, ContextSizes::default()),
            300 + 1850
        );
        // A smaller real window than configured is believed.
        let small = ContextSizes {
            limit: Some(2048),
            prompt: None,
        };
        assert!(shortened_context(8192, 300, 7000, small) <= 2048);
        assert!(shortened_context(400, 300, 10, ContextSizes::default()) < 400);
    }

    #[test]
    fn the_system_prompt_carries_state_and_presence() {
        let profile = profile();
        let mut state = LiveState::initial(&profile);
        let absent = system(&profile, &state, "Sam").text;
        assert!(absent.contains("You are talking with Sam."));
        assert!(absent.contains(
            "Right now you are in the living room, looking at viewer, wearing white t-shirt"
        ));
        assert!(!absent.contains("red scarf"));
        state.user_present = true;
        assert!(
            system(&profile, &state, "Sam")
                .text
                .contains("Sam is here with you and looks like this: tall, red scarf.")
        );
        assert!(absent.ends_with(CONDUCT_RULES));
    }

    #[test]
    fn a_system_prompt_counted_in_parts_costs_what_it_costs_whole() {
        let mut profile = profile();
        let state = LiveState::initial(&profile);
        for name in ["Mira", "Ilse", "春香"] {
            profile.name = name.into();
            let first = system(&profile, &state, "Sam");
            let again = system(&profile, &state, "Sam");
            assert_eq!(first, again, "the remembered count is the count");
            let whole = estimate_tokens(&first.text);
            assert!(
                first.tokens.abs_diff(whole) <= 2,
                "{} counted in parts, {whole} whole",
                first.tokens
            );
        }
    }
}
