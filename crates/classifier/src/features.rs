//! Surface features computed from the raw text, fed to the heads beside the
//! embedding. Why: the encoder sees at most its window and is weak at some
//! surface cues that decide the task (a fenced code block, a stack trace, a
//! LaTeX formula, a script that is not Latin). Each feature is scaled to
//! roughly [0, 1]. The list is versioned by name in the heads' metadata, so
//! heads trained with other features are refused rather than misread.

/// Names of the features, in the order [`surface_features`] returns them.
pub const FEATURE_NAMES: [&str; 10] = [
    "log_chars",
    "log_lines",
    "code_fence",
    "code_line_share",
    "stack_trace",
    "digit_share",
    "math_symbol_share",
    "latex",
    "non_latin_share",
    "ends_with_question",
];

/// Computes [`FEATURE_NAMES`] for one prompt over its full text.
pub fn surface_features(text: &str) -> Vec<f32> {
    let chars = text.chars().count().max(1) as f32;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let n_lines = lines.len().max(1) as f32;
    let code_lines = lines.iter().filter(|l| looks_like_code(l)).count() as f32;
    let digits = text.chars().filter(char::is_ascii_digit).count() as f32;
    let math = text
        .chars()
        .filter(|c| "=+*/^<>∑∫√π±×÷".contains(*c))
        .count() as f32;
    let letters = text.chars().filter(|c| c.is_alphabetic()).count().max(1) as f32;
    let non_latin = text
        .chars()
        .filter(|c| c.is_alphabetic() && !is_latin(*c))
        .count() as f32;
    let trimmed = text.trim_end();
    vec![
        (chars.ln_1p() / 10.0).min(1.5),
        (n_lines.ln_1p() / 5.0).min(1.5),
        f32::from(text.contains("```")),
        code_lines / n_lines,
        f32::from(has_stack_trace(text)),
        (digits / chars * 5.0).min(1.0),
        (math / chars * 10.0).min(1.0),
        f32::from(
            text.contains("\\frac")
                || text.contains("$$")
                || text.contains("\\(")
                || text.contains("\\begin{"),
        ),
        non_latin / letters,
        f32::from(trimmed.ends_with('?') || trimmed.ends_with('？')),
    ]
}

fn is_latin(c: char) -> bool {
    (c as u32) < 0x0250 || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

fn looks_like_code(line: &str) -> bool {
    let t = line.trim();
    let ends = [";", "{", "}", "):", "=>", "*/"];
    let starts = [
        "def ",
        "class ",
        "import ",
        "from ",
        "#include",
        "fn ",
        "let ",
        "const ",
        "var ",
        "function ",
        "public ",
        "private ",
        "return ",
        "if (",
        "for (",
        "while (",
        "SELECT ",
        "select ",
        "//",
        "/*",
        "<div",
        "<?php",
        "$ ",
        "pub ",
        "use ",
        "package ",
        "func ",
    ];
    ends.iter().any(|e| t.ends_with(e)) || starts.iter().any(|s| t.starts_with(s))
}

fn has_stack_trace(text: &str) -> bool {
    text.contains("Traceback (most recent call last)")
        || text.contains("Exception in thread")
        || text.contains("\n    at ")
        || text.contains("\n\tat ")
        || text.contains("panicked at")
        || text.contains("Error: ")
        || text.contains("error[E")
        || text.contains("Segmentation fault")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str, name: &str) -> f32 {
        let i = FEATURE_NAMES.iter().position(|n| *n == name).unwrap();
        surface_features(text)[i]
    }

    #[test]
    fn one_value_per_name() {
        assert_eq!(surface_features("hello").len(), FEATURE_NAMES.len());
        assert_eq!(surface_features("").len(), FEATURE_NAMES.len());
    }

    #[test]
    fn detects_code_traces_formulas_and_scripts() {
        assert_eq!(f("fix this:\n```\nfn main() {\n}\n```", "code_fence"), 1.0);
        assert!(f("def f(x):\n    return x\n", "code_line_share") > 0.9);
        assert_eq!(
            f(
                "Traceback (most recent call last):\n  File \"a.py\"",
                "stack_trace"
            ),
            1.0
        );
        assert_eq!(f("Solve $$\\frac{1}{2}$$", "latex"), 1.0);
        assert!(f("中国有多少个省", "non_latin_share") > 0.99);
        assert_eq!(f("café au lait", "non_latin_share"), 0.0);
        assert_eq!(f("What is it? ", "ends_with_question"), 1.0);
        assert_eq!(f("Tell me a story", "ends_with_question"), 0.0);
    }
}
