from __future__ import annotations

import random
import re

from hypothesis import given
from hypothesis import strategies as st

from payflow.core._keys import derived_key, new_key

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@given(st.integers(0, 2**32))
def test_keys_are_uuid4_shaped_and_seeded(seed: int) -> None:
    a = new_key(random.Random(seed))
    assert UUID4.fullmatch(a)
    assert a == new_key(random.Random(seed))


def test_keys_do_not_repeat() -> None:
    rng = random.Random(0)
    assert len({new_key(rng) for _ in range(10_000)}) == 10_000


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64))
def test_derived_keys_are_functions_of_their_parts(a: str, b: str) -> None:
    assert derived_key("pay", a) == derived_key("pay", a)
    assert UUID4.fullmatch(derived_key("pay", a))
    if a != b:
        assert derived_key("pay", a) != derived_key("pay", b)
