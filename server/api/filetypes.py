"""A file's language (editor mode) and MIME type, from its name."""

from __future__ import annotations

import mimetypes

LANGUAGE_BY_EXTENSION = {
    "py": "python", "pyi": "python", "js": "javascript", "mjs": "javascript",
    "cjs": "javascript", "jsx": "javascript", "ts": "typescript", "tsx": "typescript",
    "json": "json", "md": "markdown", "html": "html", "htm": "html", "css": "css",
    "scss": "scss", "less": "less", "java": "java", "c": "c", "h": "c", "cpp": "cpp",
    "cc": "cpp", "hpp": "cpp", "cs": "csharp", "go": "go", "rs": "rust", "rb": "ruby",
    "php": "php", "sh": "shell", "bash": "shell", "zsh": "shell", "yaml": "yaml",
    "yml": "yaml", "toml": "toml", "xml": "xml", "sql": "sql", "kt": "kotlin",
    "swift": "swift", "lua": "lua", "r": "r", "dart": "dart", "scala": "scala",
    "vue": "vue", "svelte": "svelte", "txt": "plaintext", "ini": "ini", "csv": "plaintext",
}
LANGUAGE_BY_NAME = {"dockerfile": "dockerfile", "makefile": "makefile"}
# mimetypes guesses from the system tables; these names it gets wrong for source code
# (".ts" is MPEG transport stream there) or does not know.
MIME_OVERRIDES = {
    "ts": "text/x-typescript", "tsx": "text/x-typescript", "jsx": "text/javascript",
    "md": "text/markdown", "py": "text/x-python", "rs": "text/x-rust", "go": "text/x-go",
    "yaml": "application/yaml", "yml": "application/yaml", "toml": "application/toml",
    "sh": "application/x-sh",
}


def extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def language_of(name: str) -> str | None:
    return LANGUAGE_BY_NAME.get(name.lower()) or LANGUAGE_BY_EXTENSION.get(extension(name))


def mime_type_of(name: str) -> str:
    ext = extension(name)
    if ext in MIME_OVERRIDES:
        return MIME_OVERRIDES[ext]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed:
        return guessed
    return "text/plain" if language_of(name) else "application/octet-stream"
