//! Whether the strings of a JSON document are text: valid UTF-8, and `\\u` escapes that are not
//! half a surrogate pair. Providers refuse such bodies; serde checks only the strings it reads,
//! which for the envelope are a few fields.

/// Whether a string in `body` (JSON that serde accepted) has a `\\u` escape of half a surrogate
/// pair. A lexer of strings only: everything else was checked by serde.
pub fn has_lone_surrogate(body: &[u8]) -> bool {
    let unit = |at: usize| body.get(at..at + 4).and_then(hex4);
    let (mut i, mut in_string) = (0, false);
    while i < body.len() {
        match (in_string, body[i]) {
            (_, b'"') => in_string = !in_string,
            (true, b'\\') if body.get(i + 1) == Some(&b'u') => {
                match unit(i + 2) {
                    Some(0xD800..=0xDBFF) => {
                        let paired = body.get(i + 6..i + 8) == Some(b"\\u")
                            && unit(i + 8).is_some_and(|low| (0xDC00..0xE000).contains(&low));
                        if !paired {
                            return true;
                        }
                        i += 6;
                    }
                    Some(0xDC00..=0xDFFF) => return true,
                    _ => {}
                }
                i += 5;
            }
            (true, b'\\') => i += 1,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Checks that every string and key in `body` is text, with serde's error (line and column)
/// if one is not. Strings nested deeper than `TEXT_DEPTH` are skipped unchecked, as serde's own
/// recursion limit (128) would refuse the body otherwise.
pub fn check_text(body: &[u8]) -> Result<(), serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    TextOnly(TEXT_DEPTH).deserialize(&mut de)?;
    de.end()
}

const TEXT_DEPTH: usize = 100;

/// Reads any JSON value and keeps nothing, but reads every string and key as text, so that
/// serde checks its UTF-8 and escapes (a borrowed string is not copied). Holds the depth left.
struct TextOnly(usize);

impl<'de> serde::de::DeserializeSeed<'de> for TextOnly {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0 == 0 {
            return <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d).map(drop);
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TextOnly {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(TextOnly(self.0 - 1))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(TextOnly(self.0 - 1))?.is_some() {
            map.next_value_seed(TextOnly(self.0 - 1))?;
        }
        Ok(())
    }
}

/// Four hex digits as a UTF-16 code unit.
pub fn hex4(hex: &[u8]) -> Option<u32> {
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_escapes_inside_strings_count_and_pairs_are_whole() {
        assert!(has_lone_surrogate(br#"{"a":"\ud800"}"#));
        assert!(has_lone_surrogate(br#"{"a":"\udc00\ud800"}"#));
        assert!(has_lone_surrogate(br#"{"\ud83dx":1}"#));
        assert!(!has_lone_surrogate(br#"{"a":"\ud83d\ude00"}"#));
        // An escaped backslash followed by `ud800` is text, not an escape.
        assert!(!has_lone_surrogate(br#"{"a":"\\ud800"}"#));
        assert!(!has_lone_surrogate(br#"{"a":"\u00e9 \" \\"}"#));
        assert!(check_text(br#"{"a":["\ud800"]}"#).is_err());
        assert!(check_text(b"{\"a\":\"\xff\"}").is_err());
        assert!(check_text(br#"{"a":[1e999999, "ok"]}"#).is_err(), "numbers are read too");
        assert!(check_text(br#"{"a":[1, "\ud83d\ude00", {"b": null}]}"#).is_ok());
    }
}
