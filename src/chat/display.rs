//! How a stored message is shown (pure): its display HTML, its picture and whether it stopped at the
//! length limit — decided once for the chat page, the JSON API and the stream's `done` event.

use serde_json::{Value, json};
use uuid::Uuid;

use super::render;
use super::store::MessageRow;

/// A message as it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage {
    /// The message id.
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// The sanitised display form of its text.
    pub html: String,
    /// Its picture, if it has one.
    pub image: Option<ShownPicture>,
    /// Why the picture asked for with it could not be made.
    pub image_error: Option<String>,
    /// The reply stopped at the token limit (`finish_reason = length`).
    pub cut_at_limit: bool,
}

/// A message's picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownPicture {
    /// The image id.
    pub id: Uuid,
    /// Where the owner fetches it.
    pub url: String,
    /// Width in pixels (0 when unknown).
    pub width: i32,
    /// Height in pixels (0 when unknown).
    pub height: i32,
}

impl ShownPicture {
    /// The picture of `message`, if it has one.
    pub fn of(message: &MessageRow) -> Option<Self> {
        message.image_id.map(|id| Self {
            id,
            url: format!("/media/{id}"),
            width: message.image_width.unwrap_or(0),
            height: message.image_height.unwrap_or(0),
        })
    }

    /// `{"id","url","width","height"}`, as the API and the `image`/`done` events carry it.
    pub fn json(&self) -> Value {
        json!({"id": self.id, "url": self.url, "width": self.width, "height": self.height})
    }
}

impl ShownMessage {
    /// How `message` is shown.
    pub fn of(message: &MessageRow) -> Self {
        Self {
            id: message.id.to_string(),
            role: message.role.clone(),
            html: render::to_html(&message.content),
            image: ShownPicture::of(message),
            image_error: message.image_error.clone(),
            cut_at_limit: message.finish_reason.as_deref() == Some("length"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Timestamp;

    fn row(content: &str, image: Option<Uuid>, finish: Option<&str>) -> MessageRow {
        MessageRow {
            id: Uuid::nil(),
            role: "assistant".into(),
            content: content.into(),
            image_id: image,
            image_error: None,
            image_width: image.map(|_| 832),
            image_height: image.map(|_| 1216),
            finish_reason: finish.map(str::to_owned),
            created_at: Timestamp::now(),
            edited_at: None,
        }
    }

    #[test]
    fn a_reply_shows_its_html_picture_and_length_note() {
        let picture = Uuid::now_v7();
        let shown = ShownMessage::of(&row("- a\n- b", Some(picture), Some("length")));
        assert!(shown.html.contains("<li>a</li>"), "{}", shown.html);
        assert!(shown.cut_at_limit);
        let image = shown.image.expect("a picture");
        assert_eq!(image.url, format!("/media/{picture}"));
        assert_eq!(
            image.json(),
            json!({"id": picture, "url": format!("/media/{picture}"), "width": 832, "height": 1216})
        );
        let plain = ShownMessage::of(&row("<b>hi</b>", None, Some("stop")));
        assert!(!plain.cut_at_limit && plain.image.is_none());
        assert!(
            !plain.html.contains("<b>"),
            "raw HTML is text: {}",
            plain.html
        );
    }
}
