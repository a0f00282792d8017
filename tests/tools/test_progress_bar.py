"""The tools' progress bar redraws on a terminal only; a redirected log gets one line."""
import io

from pycaffe_mct.tools._flags import ProgressBar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_redirected_stream_gets_one_summary_line():
    stream = io.StringIO()
    bar = ProgressBar(3, stream=stream)
    for done in range(4):
        bar.update(done, force=True)
    bar.finish(3)
    text = stream.getvalue()
    assert "\r" not in text and text.count("\n") == 1
    assert "3/3 images" in text


def test_a_terminal_sees_the_bar_redrawn():
    stream = Terminal()
    bar = ProgressBar(3, stream=stream)
    for done in range(4):
        bar.update(done, force=True)
    bar.finish(3)
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1
    assert text.rsplit("\r", 1)[1].startswith("[" + "#" * 30 + "] 3/3 images")
