"""What a streaming client sees: text is only ever appended, and the pieces add up to the non-streamed answer."""

from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.serve.batcher import visible_text

TEXT = st.text(alphabet="ab \n\ufffd", max_size=30)


@given(TEXT, st.lists(st.text(alphabet="ab \n", min_size=1, max_size=3), max_size=3), st.booleans())
@settings(max_examples=300, deadline=None)
def test_streamed_pieces_add_up_to_the_final_answer(text, stop, strip):
    emitted, stopped_at = "", len(text)
    for end in range(1, len(text) + 1):  # the decoded text grows as tokens arrive
        visible, stopped = visible_text(text[:end], stop, strip, final=False)
        if visible.startswith(emitted):
            emitted = visible
        if stopped:
            stopped_at = end
            break
    final, _ = visible_text(text[:stopped_at], stop, strip, final=True)
    assert final.startswith(emitted)  # nothing sent is ever taken back
    assert not any(s in final for s in stop)
    cut = text[:stopped_at]
    expected = cut[:min([cut.find(s) for s in stop if s in cut], default=len(cut))]
    assert final == (expected.strip() if strip else expected)
