"""The tools' progress bar redraws on a terminal only; a redirected log gets plain lines."""
import io

from pycaffe_mct.tools._flags import ProgressBar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_redirected_stream_gets_a_line_per_tenth_and_the_summary():
    stream = io.StringIO()
    bar = ProgressBar(1000, stream=stream)
    for done in range(1001):
        bar.update(done, force=True)
    bar.finish(1000)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[0] for line in lines] == [f"{k}00/1000" for k in range(1, 10)] + ["1000/1000"]


def test_a_terminal_sees_the_bar_redrawn():
    stream = Terminal()
    bar = ProgressBar(3, stream=stream)
    for done in range(4):
        bar.update(done, force=True)
    bar.finish(3)
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1
    assert text.rsplit("\r", 1)[1].startswith("[" + "#" * 30 + "] 3/3 images")
