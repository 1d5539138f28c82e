//! The prompts every speed measurement uses (benches/classify.rs,
//! `pointsman bench classify`, scripts/side_by_side.py through the latter),
//! kept in one place so their numbers compare.

/// An 18-token request.
pub const SHORT: &str = "Write a Python function that checks whether a string is a palindrome.";

/// A 219-token request with a pasted traceback and Dockerfile (783
/// characters; over 400, so classify also encodes its two views).
pub const LONG: &str = "I am getting this error when I run my Flask app in Docker and I can't figure out why. \
     It works fine locally. Here is the traceback:\n\nTraceback (most recent call last):\n  \
     File \"/app/app.py\", line 12, in <module>\n    from flask_sqlalchemy import SQLAlchemy\n\
     ModuleNotFoundError: No module named 'flask_sqlalchemy'\n\nMy Dockerfile is:\n\nFROM python:3.11-slim\n\
     WORKDIR /app\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nCOPY . .\n\
     CMD [\"python\", \"app.py\"]\n\nand requirements.txt contains flask and gunicorn. I rebuilt the image \
     twice with --no-cache and the error stays the same. What am I doing wrong, and how should I structure \
     the Dockerfile so that dependencies are cached between builds but still installed correctly? Please \
     explain step by step and show the corrected files.";

/// The 32-prompt batch of the batched measurements: every fourth prompt is
/// [`LONG`], the others [`SHORT`].
pub fn mixed_batch() -> Vec<&'static str> {
    (0..32)
        .map(|i| if i % 4 == 0 { LONG } else { SHORT })
        .collect()
}
