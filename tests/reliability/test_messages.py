"""Messages stay one readable line, however long the values they quote."""
from pycaffe_mct.errors import QUOTE_LIMIT, CaffeError, quote


def test_a_huge_word_keeps_its_beginning_and_end_and_says_how_much_is_left_out():
    message = str(CaffeError("layer '" + "a" * 150_000 + "b" * 150_000 + "': unknown type"))
    assert len(message) < 2 * QUOTE_LIMIT
    assert message.startswith("layer 'aaa") and message.endswith("bbb': unknown type")
    assert f"[{300_003 - QUOTE_LIMIT} characters left out]" in message


def test_a_long_path_keeps_its_file_name():
    path = "/data/" + "deep/" * 60 + "train_lmdb/data.mdb"
    message = str(CaffeError(f"{path}: cut short"))
    assert "train_lmdb/data.mdb: cut short" in message and message.startswith("/data/deep/")


def test_short_values_and_spaced_values_within_the_limit_are_untouched():
    assert quote("(2, 3)") == "(2, 3)"
    assert str(CaffeError("a b " * 100)) == "a b " * 100


def test_quote_cuts_values_with_spaces():
    shape = tuple(range(100_000))
    assert len(quote(shape)) < QUOTE_LIMIT + 50
