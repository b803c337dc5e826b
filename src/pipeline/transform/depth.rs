//! How deep a program's text nests, checked before VRL compiles it: VRL's
//! compiler and runtime recurse once per level of brackets and once per
//! operator of an expression, with no limit of their own, so a program a
//! few kilobytes long could overflow a thread's stack and abort the process.

/// Brackets (`(`, `[`, `{`) open at once, at most.
pub const MAX_NESTING: usize = 32;
/// Operators in one expression (a statement between line ends or `;`), at
/// most.
pub const MAX_OPERATORS: usize = 128;

/// What is too deep, and the byte offset where it passed the bound.
#[derive(Debug, PartialEq, Eq)]
pub enum TooDeep {
    Nesting(usize),
    Operators(usize),
}

/// Scans `text` (strings and comments skipped) for brackets nested past
/// [`MAX_NESTING`] or an expression of more than [`MAX_OPERATORS`].
pub fn check(text: &str) -> Result<(), TooDeep> {
    let bytes = text.as_bytes();
    let mut open: Vec<u8> = Vec::new();
    // Operators of the statement being read, and of those a block left.
    let mut operators = 0usize;
    let mut outer: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => i = string_end(bytes, i + 1, b'"'),
            // s'raw', r'regex', t'timestamp'
            b's' | b'r' | b't'
                if bytes.get(i + 1) == Some(&b'\'') && (i == 0 || !is_word(bytes[i - 1])) =>
            {
                i = string_end(bytes, i + 2, b'\'')
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                open.push(b);
                if open.len() > MAX_NESTING {
                    return Err(TooDeep::Nesting(i));
                }
                if b == b'{' {
                    outer.push(operators);
                    operators = 0;
                }
            }
            b')' | b']' | b'}' => {
                let closed = open.pop();
                if closed == Some(b'{') {
                    operators = outer.pop().unwrap_or(0);
                }
            }
            b'\n' | b';' if matches!(open.last(), None | Some(b'{')) => operators = 0,
            b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'!' | b'&' | b'|' | b'?' => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(TooDeep::Operators(i));
                }
                // A run of operator characters (`==`, `??`, `>=`) is one.
                while i + 1 < bytes.len() && is_operator(bytes[i + 1]) {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_operator(b: u8) -> bool {
    b"+-*/%<>=!&|?".contains(&b)
}

/// The offset of the quote that ends a string begun at `from`.
fn string_end(bytes: &[u8], mut from: usize, quote: u8) -> usize {
    while from < bytes.len() && bytes[from] != quote {
        if bytes[from] == b'\\' {
            from += 1;
        }
        from += 1;
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_of_every_day_pass() {
        let text = r#"
# a comment with ((((( and + + + + in it
.name = upcase!(.name) + " " + string!(.last)
if .n > 3 && .m != null { .big = true } else { .big = false }
.s = "{{{{{{{{{{ \" ((((((( "
.r = match(.x, r'^(((a)))+$') ?? false
"#;
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn deep_brackets_and_long_expressions_are_refused_where_they_pass_the_bound() {
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(check(&deep), Err(TooDeep::Nesting(MAX_NESTING)));
        let objects = format!(".x = {}1{}", "{\"a\":".repeat(33), "}".repeat(33));
        assert!(matches!(check(&objects), Err(TooDeep::Nesting(_))));
        let long = format!(".x = {}1", "1 + ".repeat(200));
        assert!(matches!(check(&long), Err(TooDeep::Operators(_))));
        // The same operators over many statements are fine.
        let many = ".x = 1 + 1\n".repeat(200);
        assert_eq!(check(&many), Ok(()));
        // And a block's statements do not add to the expression around it.
        let block = format!("if true {{\n{}}}", ".x = 1 + 1\n".repeat(200));
        assert_eq!(check(&block), Ok(()));
    }
}
