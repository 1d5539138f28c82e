//! What the encoder tests share.

/// Prompts of every length up to the window, the last ones cut to it: short
/// ones, code, mixed scripts, and a sentence repeated to 10-400 words.
pub fn prompts_across_lengths() -> Vec<String> {
    let words = "the quick brown fox jumps over the lazy dog while a compiler reports error E0277 in main.rs";
    let mut out: Vec<String> = vec![
        "hi".into(),
        "Translate to French: where is the station?".into(),
        "def f(x):\n    return [i**2 for i in range(x)]  # why is this slow?".into(),
        "Résumé: 東京は日本の首都です。Объясни, пожалуйста.".into(),
    ];
    for n in [10, 40, 90, 150, 250, 400] {
        out.push(
            words
                .split(' ')
                .cycle()
                .take(n)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    out
}
