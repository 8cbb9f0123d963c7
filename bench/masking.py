"""Secret masking cost: milliseconds per MiB of output fed in 16 KiB chunks (a terminal read).

``python bench/masking.py``: no secrets, 20 API tokens, 20 tokens and a 1.7 KB PEM key
(each of its 27 lines is a pattern too); 1 MiB of random text, best of 5. Figures only.
"""

from __future__ import annotations

import random
import string
import time

from execution.masking import SecretMasker

CHUNK = 16384


def main() -> None:
    rng = random.Random(1)
    tokens = ["sk_live_" + "".join(rng.choice(string.ascii_letters) for _ in range(32))
              for _ in range(20)]
    pem_lines = ["".join(rng.choice(string.ascii_letters + "+/") for _ in range(64))
                 for _ in range(25)]
    pem = "\n".join(["-----BEGIN PRIVATE KEY-----", *pem_lines, "-----END PRIVATE KEY-----"])
    text = "".join(rng.choice(string.ascii_letters + "  \n") for _ in range(1 << 20))
    text = text[: 1 << 19] + tokens[3] + text[1 << 19:]
    chunks = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]
    for label, values in (("no secrets", []), ("20 tokens", tokens),
                          ("20 tokens + PEM key", [*tokens, pem])):
        best = float("inf")
        for _ in range(5):
            masker = SecretMasker(values)
            started = time.perf_counter()
            shown = "".join(masker.feed(chunk) for chunk in chunks) + masker.flush()
            best = min(best, time.perf_counter() - started)
        assert not values or tokens[3] not in shown
        print(f"{label:22} {best * 1000:6.1f} ms per MiB ({len(chunks)} chunks of 16 KiB)")


if __name__ == "__main__":
    main()
