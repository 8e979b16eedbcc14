//! Splitting a JSON array answer into its elements as the bytes arrive.
//!
//! LINSTOR's list answers are one JSON array each, and unpaged (see `LinstorClient::list`): at
//! 10,000 volumes the resource view alone is tens of MB. Decoding it from one buffer held the
//! whole body, and then the whole parsed list, at once. Here each element is cut out of the
//! byte stream as soon as it is complete and handed on, so a caller that folds elements into a
//! compact form holds one element (and one network chunk) at a time, whatever the list's size.

/// The state of one array being split. Tracks only what is needed to find element boundaries
/// (nesting depth, strings and their escapes); each element is then decoded by serde, which
/// rejects anything malformed inside it.
#[derive(Default)]
pub(crate) struct ArraySplitter {
    /// The opening `[` was seen.
    open: bool,
    /// The closing `]` was seen.
    closed: bool,
    /// Nesting inside the current element (0 between elements).
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// A `,` was seen and no element followed yet.
    after_comma: bool,
    /// The current element is an object or array that has been closed.
    complete: bool,
    /// Bytes of the current element.
    elem: Vec<u8>,
}

impl ArraySplitter {
    /// Consumes `bytes`, calling `each` with every element completed in them.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        for &b in bytes {
            if self.in_string {
                self.elem.push(b);
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
            if !self.open {
                match b {
                    b'[' => self.open = true,
                    _ if ws => {}
                    _ => return Err("expected a JSON array".into()),
                }
                continue;
            }
            if self.closed {
                if ws {
                    continue;
                }
                return Err("trailing characters after the JSON array".into());
            }
            if self.depth > 0 {
                self.elem.push(b);
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        self.complete = self.depth == 0;
                    }
                    _ => {}
                }
                continue;
            }
            // Between elements, or inside a scalar element.
            match b {
                b',' | b']' => {
                    if self.elem.is_empty() {
                        // `[]` is the empty list; `[,` and `,,` and `,]` are not JSON.
                        if b == b',' || self.after_comma {
                            return Err("missing array element".into());
                        }
                    } else {
                        each(&self.elem)?;
                        self.elem.clear();
                        self.complete = false;
                    }
                    self.after_comma = b == b',';
                    self.closed = b == b']';
                }
                _ if ws => {
                    if !self.elem.is_empty() {
                        self.elem.push(b);
                    }
                }
                _ if self.complete => {
                    return Err("expected `,` or `]` after an array element".into());
                }
                b'"' => {
                    self.elem.push(b);
                    self.in_string = true;
                }
                b'{' | b'[' => {
                    self.elem.push(b);
                    self.depth = 1;
                }
                _ => self.elem.push(b),
            }
        }
        Ok(())
    }

    /// Checks that the answer ended with the array.
    pub(crate) fn finish(&self) -> Result<(), String> {
        if self.closed {
            Ok(())
        } else {
            Err("the answer ended inside the JSON array".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `input` fed in pieces of `step` bytes; returns the elements as strings.
    fn split(input: &str, step: usize) -> Result<Vec<String>, String> {
        let mut s = ArraySplitter::default();
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(step) {
            s.feed(piece, |e| {
                out.push(String::from_utf8_lossy(e).into_owned());
                Ok(())
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn elements_come_out_whole_however_the_bytes_are_cut() {
        let input =
            r#" [ {"a": "x]}\"{[,", "b": [1, {"c": []}]}, [2, 3] ,"s\\" , 4.5e1, null,true ] "#;
        for step in 1..=input.len() {
            let got = split(input, step).expect("a valid array");
            assert_eq!(
                got,
                [
                    r#"{"a": "x]}\"{[,", "b": [1, {"c": []}]}"#,
                    "[2, 3] ",
                    r#""s\\" "#,
                    "4.5e1",
                    "null",
                    "true "
                ],
                "step {step}"
            );
            // Every element is exactly one JSON value.
            for e in &got {
                serde_json::from_str::<serde_json::Value>(e).expect("one JSON value");
            }
        }
        assert_eq!(split("[]", 1), Ok(vec![]));
        assert_eq!(split("\n[ \n]\n", 2), Ok(vec![]));
    }

    #[test]
    fn what_is_not_one_array_is_refused() {
        for bad in [
            "",
            "{}",
            "null",
            "[",
            "[{}",
            "[{},",
            "[{}]]",
            "[{}] x",
            "[,]",
            "[{},]",
            "[{},,{}]",
            "[{}{}]",
            "[[] 1]",
            r#"["abc]"#,
        ] {
            assert!(split(bad, 3).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_split() {
        let mut s = ArraySplitter::default();
        let mut seen = 0;
        let r = s.feed(b"[1,2,3]", |_| {
            seen += 1;
            Err("no".into())
        });
        assert_eq!(r, Err("no".to_string()));
        assert_eq!(seen, 1);
    }
}
