"""Language-modelling tasks on real text: Penn Treebank (word and character level), tiny-shakespeare.

Protocol (see :mod:`suite.tasklib.language`): each split is one token stream; training data are
the stream batchified into ``streams`` contiguous columns with next-token targets; evaluation is
carried-state over the whole split (chunks of ``eval_chunk`` tokens, ``eval_streams`` columns, the
state carried across chunks), reporting ``ce`` (nats/token) and ``ppl`` (word) or ``bpc`` (char).
Vocabularies are the sorted set of symbols, so token ids are deterministic.

Conventions
-----------
* ``ptb-word``: Mikolov's PTB files; each line's whitespace-separated words followed by ``<eos>``.
  Vocabulary: the 10000 training symbols (``<unk>`` and ``<eos>`` included); valid/test have no
  symbol outside it. Tokens: train 929589, valid 73760, test 82430.
* ``ptb-char``: the same files at character level. Each line is stripped, its words are joined by
  single spaces, each character is a symbol except that ``<unk>`` is **one** symbol (not five
  characters), and every line ends with a newline symbol ``"\\n"`` (the ``<eos>`` analogue).
  Vocabulary: the 49 symbols of the training file (valid/test use no other). Characters:
  train 4837402, valid 379102, test 423247.
* ``tiny-shakespeare``: Karpathy's ``input.txt`` (1115394 characters, 65 symbols, vocabulary over
  the whole file as in char-rnn / nanoGPT). Test = the last 10 % (``text[int(0.9 n):]``, the
  usual 90/10 split); validation = the last ``val_fraction`` (default 5 %) of the 90 % training
  part; train = the rest of it: 953662 / 50192 / 111540 characters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from suite.datafiles import DataFile, resolve
from suite.tasklib.language import LanguageParams, TokenStreamTask, build_vocab, encode

_PTB_SOURCE = (
    "Penn Treebank, Mikolov et al. (2010) word-level preprocessing: data/{name} inside "
    "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz (LDC-derived text: never redistribute)"
)
PTB_FILES = {
    split: DataFile(path=f"language/ptb/ptb.{split}.txt", sha256=sha, url=None,
                    source=_PTB_SOURCE.format(name=f"ptb.{split}.txt"))
    for split, sha in (
        ("train", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        ("valid", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        ("test", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    )
}
_PTB_SPLITS = {"train": "train", "val": "valid", "test": "test"}

TINY_SHAKESPEARE = DataFile(
    path="language/tiny_shakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    source="tiny-shakespeare, A. Karpathy's char-rnn (public-domain text)",
)

EOS = "<eos>"
UNK = "<unk>"
NEWLINE = "\n"


def _read_lines(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f]


def ptb_word_tokens(lines: list[list[str]]) -> list[str]:
    """Words of every line followed by ``<eos>`` (Mikolov's convention)."""
    out: list[str] = []
    for words in lines:
        out.extend(words)
        out.append(EOS)
    return out


def ptb_char_tokens(lines: list[list[str]]) -> list[str]:
    """Characters of every line (words joined by one space, ``<unk>`` as one symbol) + ``"\\n"``."""
    out: list[str] = []
    for words in lines:
        for i, word in enumerate(words):
            if i:
                out.append(" ")
            if word == UNK:
                out.append(UNK)
            else:
                out.extend(word)
        out.append(NEWLINE)
    return out


class _PTB(TokenStreamTask):
    @classmethod
    def data_files(cls, params: LanguageParams) -> list[DataFile]:
        return list(PTB_FILES.values())

    def tokenize(self, lines: list[list[str]]) -> list[str]:
        raise NotImplementedError

    def load(self) -> tuple[list[str], dict[str, np.ndarray]]:
        tokens = {
            split: self.tokenize(_read_lines(resolve(PTB_FILES[name], self.data_dir)))
            for split, name in _PTB_SPLITS.items()
        }
        vocab = build_vocab([tokens["train"]])  # valid/test symbols must all occur in train
        return vocab, {s: encode(t, vocab, f"{self.name}/{s}") for s, t in tokens.items()}


class PTBWord(_PTB):
    name = "ptb-word"
    summary = "Penn Treebank word level (Mikolov, 10k vocab incl. <eos>): 929589/73760/82430 tokens, perplexity"
    level = "word"
    metrics = TokenStreamTask.metric_specs("word")
    primary_metric = "ppl"

    def tokenize(self, lines: list[list[str]]) -> list[str]:
        return ptb_word_tokens(lines)


class PTBChar(_PTB):
    name = "ptb-char"
    summary = "Penn Treebank character level from the word files (<unk> one symbol, '\\n' per line): bits/char"
    level = "char"
    metrics = TokenStreamTask.metric_specs("char")
    primary_metric = "bpc"

    def tokenize(self, lines: list[list[str]]) -> list[str]:
        return ptb_char_tokens(lines)


class TinyShakespeareParams(LanguageParams):
    val_fraction: float = Field(
        0.05, gt=0.0, lt=0.5, description="tail of the 90 % training part held out for validation"
    )


class TinyShakespeare(TokenStreamTask):
    name = "tiny-shakespeare"
    summary = "tiny-shakespeare characters (65 symbols): 90/10 train/test, val = last 5 % of train; bits/char"
    Params = TinyShakespeareParams
    level = "char"
    metrics = TokenStreamTask.metric_specs("char")
    primary_metric = "bpc"
    test_fraction = 0.1

    @classmethod
    def data_files(cls, params: LanguageParams) -> list[DataFile]:
        return [TINY_SHAKESPEARE]

    @staticmethod
    def split_bounds(n: int, val_fraction: float) -> dict[str, tuple[int, int]]:
        """Character ranges ``[start, stop)`` of the splits of a text of ``n`` characters."""
        train_end = int(n * 0.9)
        val_start = train_end - int(train_end * val_fraction)
        return {"train": (0, val_start), "val": (val_start, train_end), "test": (train_end, n)}

    def load(self) -> tuple[list[str], dict[str, np.ndarray]]:
        text = resolve(TINY_SHAKESPEARE, self.data_dir).read_text(encoding="utf-8")
        vocab = build_vocab([text])
        ids = encode(text, vocab, self.name)
        bounds = self.split_bounds(len(ids), self.params.val_fraction)
        return vocab, {s: ids[a:b] for s, (a, b) in bounds.items()}
