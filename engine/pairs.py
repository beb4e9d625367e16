"""Is this output folder the stylization of this input? (`evaluate` and `preview`.)

Comparing a render with another scene's output, or with an output missing frames, gives
numbers and pictures that look plausible and mean nothing. Each output frame records
what it was made from (run.py: the input file's path in the settings, and its identity,
size and modification time), so the pair can be checked before anything is measured:

* no output frame for any input frame, or frames of another size: refused (exit 2);
* every output frame made from other files (another scene, another folder): refused,
  naming the recorded input, unless `allow_mismatch` (renders moved or copied since);
* some frames re-rendered since, frames missing in the middle, or output frames beyond
  the input's range: a warning naming them (a partial range is a normal thing to look at,
  a partial mismatch is worth knowing), and only frames that have both are used.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from . import exr
from .errors import FlowstyleError
from .frames import Sequence
from .run import ATTR_INPUT, ATTR_SETTINGS

OUTPUT_NAME = re.compile(r"^flowstyle_(\d+)\.exr$")  # run.OUTPUT_PATTERN, read back


def _shown(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")


def matched_frames(sequence: Sequence, input_path: str, out_dir: str,
                   warn: Callable[[str], None], allow_mismatch: bool = False) -> list[int]:
    """Frame numbers that have both an input and a stylized output of the same size made
    from that input; raises FlowstyleError for a pair that is not one, warns for a
    partial one (see the module docstring)."""
    try:
        names = os.listdir(out_dir)
    except OSError as exc:
        raise FlowstyleError(f"{out_dir}: cannot read the output folder ({exc.strerror}).") from exc
    outputs = {int(m.group(1)): os.path.join(out_dir, name)
               for name in names if (m := OUTPUT_NAME.match(name))}
    numbers = [n for n in sequence.numbers if n in outputs]
    if not numbers:
        found = f"frames {min(outputs)}-{max(outputs)}" if outputs else "none"
        raise FlowstyleError(f"{out_dir}: no stylized frame (flowstyle_####.exr) matches a frame "
                             f"of {input_path} (input frames {sequence.numbers[0]}-"
                             f"{sequence.numbers[-1]}, stylized: {found}). Give the output "
                             "folder of this input.")
    extra = sorted(n for n in outputs if n not in sequence.numbers)
    if extra:
        warn(f"{out_dir}: stylized frame(s) {_shown(extra)} have no input frame in {input_path}; "
             "they are left out.")
    gaps = [n for n in range(numbers[0], numbers[-1] + 1) if n not in outputs]
    if gaps:
        warn(f"{out_dir}: stylized frame(s) {_shown(gaps)} are missing; the frames around them "
             "are compared without them (stylize the range again to fill them).")
    foreign = []
    for n in numbers:
        path = outputs[n]
        layout = exr.read_layout(path)
        if (layout.width, layout.height) != (sequence.width, sequence.height):
            raise FlowstyleError(f"{path}: the output is {layout.width}x{layout.height} but input "
                                 f"frame {n} is {sequence.width}x{sequence.height}: it is not the "
                                 f"output of {input_path}. Give the matching input and output.")
        attributes = exr.read_attributes(path)
        recorded = attributes.get(ATTR_INPUT)
        if recorded is not None and recorded != sequence.identity(n):
            try:
                source = json.loads(attributes.get(ATTR_SETTINGS, "{}")).get("input", "?")
            except ValueError:
                source = "?"
            foreign.append((n, source))
    if foreign and len(foreign) == len(numbers) and not allow_mismatch:
        n, source = foreign[0]
        raise FlowstyleError(f"{out_dir}: these stylized frames were made from other input "
                             f"files (frame {n} from {source}), not from {input_path}. Give the "
                             "input they were made from, or pass --allow-mismatch if the renders "
                             "were only moved or copied.")
    if foreign:
        warn(f"{input_path}: input frame(s) {_shown([n for n, _ in foreign])} changed since they "
             "were stylized (rendered again?) or are other files: the comparison mixes old and "
             "new images. Stylize again to bring the output up to date.")
    return numbers
