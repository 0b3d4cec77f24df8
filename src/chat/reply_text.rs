//! The one rule for a reply's text (pure): the reply is what the model wrote without leading or trailing
//! whitespace, and the stream shows exactly that, so what a client assembles from `token` events equals the
//! stored reply byte for byte.
//!
//! Models often open with a space or blank lines and end with a newline. Leading whitespace is dropped as
//! it arrives; whitespace after the text so far is held back until more text follows it (then it is sent
//! with that text) or the reply ends (then it is dropped). Whitespace inside the reply is never changed.
//! "Whitespace" is Unicode's `White_Space`, the same set `str::trim` removes.

/// Turns streamed pieces into the pieces to show; their concatenation is always the trimmed reply.
#[derive(Debug, Default)]
pub struct TrimmedStream {
    started: bool,
    held: String,
}

impl TrimmedStream {
    /// A stream that has shown nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What of `piece` can be shown now (`None` when it is all held back or dropped).
    pub fn push(&mut self, piece: &str) -> Option<String> {
        let piece = if self.started {
            piece
        } else {
            let rest = piece.trim_start();
            if rest.is_empty() {
                return None;
            }
            self.started = true;
            rest
        };
        let body = piece.trim_end();
        if body.is_empty() {
            self.held.push_str(piece);
            return None;
        }
        let mut shown = std::mem::take(&mut self.held);
        shown.push_str(body);
        self.held.push_str(&piece[body.len()..]);
        Some(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(pieces: &[&str]) -> String {
        let mut stream = TrimmedStream::new();
        pieces.iter().filter_map(|p| stream.push(p)).collect()
    }

    #[test]
    fn leading_and_trailing_spaces_and_newlines_never_show() {
        assert_eq!(
            shown(&["  \n", "Hello", " ", "world", " \n\n"]),
            "Hello world"
        );
        assert_eq!(shown(&["\u{a0}Hi\u{3000}"]), "Hi", "Unicode spaces too");
        assert_eq!(shown(&[" ", "\n", "\t"]), "", "only whitespace is nothing");
    }

    #[test]
    fn whitespace_inside_the_reply_is_kept_exactly() {
        assert_eq!(
            shown(&["- one\n", "- two\n\n", "```\n  code\n```", "\n"]),
            "- one\n- two\n\n```\n  code\n```"
        );
    }

    #[test]
    fn every_way_of_cutting_a_reply_into_pieces_gives_the_trimmed_reply() {
        let replies = [
            " \n Hello, wörld! \n",
            "a  b\n\n c ",
            "\u{2003}日本語 テキスト\u{2003}",
            "x",
            "   ",
        ];
        for reply in replies {
            let boundaries: Vec<usize> = (0..=reply.len())
                .filter(|&i| reply.is_char_boundary(i))
                .collect();
            for &a in &boundaries {
                for &b in boundaries.iter().filter(|&&b| b >= a) {
                    let pieces = [&reply[..a], &reply[a..b], &reply[b..]];
                    assert_eq!(shown(&pieces), reply.trim(), "{reply:?} cut at {a}, {b}");
                }
            }
        }
    }
}
