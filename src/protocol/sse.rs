//! Server-sent event framing for `GET /mailbox/listen`, as academy's client parses it:
//! lines `field: value`, events ended by a blank line, `:` lines are comments.

/// The first bytes of every stream: sent at once so proxies and the client see the
/// stream open, and `retry:` tells the client how long to wait before reconnecting
/// after the stream ends (its default is a full second).
pub fn preamble(retry_ms: u64) -> String {
    format!("retry: {retry_ms}\n: connected\n\n")
}

/// A keep-alive: the client ignores comments, idle connections stay open at the edge.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// One message event. `id` is the mailbox's sequence number for the message. A
/// message text spanning several lines is sent as several `data:` lines, which the
/// client joins back with newlines (JSON does not mind the whitespace).
pub fn event(id: u64, data: &str) -> String {
    let mut frame = String::with_capacity(data.len() + 32);
    frame.push_str("id: ");
    frame.push_str(&id.to_string());
    frame.push('\n');
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line.strip_suffix('\r').unwrap_or(line));
        frame.push('\n');
    }
    frame.push('\n');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_carries_its_id_and_data_and_ends_with_a_blank_line() {
        assert_eq!(event(7, r#"{"a":1}"#), "id: 7\ndata: {\"a\":1}\n\n");
    }

    #[test]
    fn multi_line_data_becomes_several_data_lines() {
        assert_eq!(
            event(1, "{\n\"a\": 1\r\n}"),
            "id: 1\ndata: {\ndata: \"a\": 1\ndata: }\n\n"
        );
    }

    #[test]
    fn the_preamble_sets_retry_and_holds_no_data() {
        let preamble = preamble(100);
        assert!(preamble.starts_with("retry: 100\n"));
        assert!(preamble.ends_with("\n\n"));
        assert!(!preamble.contains("data:"));
        assert!(KEEP_ALIVE.starts_with(':'));
    }
}
