"""Projects that live in a git repository: connect, import, pull, commit and push."""
