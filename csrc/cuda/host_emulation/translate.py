"""Rewrite the CUDA launches of a .cu file for the host emulation (emu.h).

    kernel<T, V><<<grid, block, smem, stream>>>(args);
becomes
    emu_launch(grid, block, [&] { kernel<T, V>(args); });

Usage: translate.py SRC.cu DST.cpp
"""

import sys
from pathlib import Path


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def translate(src: str) -> str:
    out, i = [], 0
    while (j := src.find("<<<", i)) >= 0:
        # The kernel expression starts after the previous statement, brace or label.
        k = j
        while k > 0 and src[k - 1] not in ";{}" and not (src[k - 1] == ":" and src[k] == "\n"):
            k -= 1
        kernel = src[k:j]
        end_cfg = src.index(">>>", j)
        config = _split_top_level(src[j + 3:end_cfg])
        open_paren = src.index("(", end_cfg)
        depth, q = 0, open_paren
        while True:
            depth += {"(": 1, ")": -1}.get(src[q], 0)
            if depth == 0:
                break
            q += 1
        args = src[open_paren + 1:q]
        indent = kernel[: len(kernel) - len(kernel.lstrip())]
        out.append(src[i:k])
        out.append(f"{indent}emu_launch({config[0]}, {config[1]}, [&] {{ {kernel.strip()}({args}); }})")
        i = q + 1
    out.append(src[i:])
    return "".join(out)


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(translate(Path(sys.argv[1]).read_text()))
