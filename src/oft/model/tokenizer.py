"""Text tokenization for the OpenVLA prompt, with the HF ``tokenizers`` library.

A Llama-2 checkpoint ships its ``tokenizer.json``; small models trained from scratch get a word-level
tokenizer built from their instructions (the Llama tokenizer is not on a user's machine). Either way the
last 256 ids of the base vocabulary are the action bins of the discrete head, as in OpenVLA.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from oft.files import config_values, read_json_object, reading

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
NUM_ACTION_BINS = 256
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<PAD>")


def make_prompt(instruction: str) -> str:
    """OpenVLA's prompt; the instruction is lower-cased exactly as the reference does."""
    return PROMPT_TEMPLATE.format(instruction=instruction.lower())


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids the VLA needs.

    ``prompt_suffix_ids``: ids appended after the prompt when it does not already end with them; for Llama
    this is the "▁" token (29871) OpenVLA's training prompts end with before the action tokens.
    ``action_token_end``: action bin b (0..255) is token ``action_token_end - 1 - b`` (OpenVLA:
    ``vocab_size - digitize(a)``; the base vocabulary without added tokens such as <PAD>).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        prompt_suffix_ids: tuple[int, ...] = (),
        action_token_end: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.prompt_suffix_ids = tuple(prompt_suffix_ids)
        self.action_token_end = (
            tokenizer.get_vocab_size(with_added_tokens=False)
            if action_token_end is None
            else action_token_end
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode_prompt(self, instruction: str) -> list[int]:
        """BOS + prompt ids (+ suffix), as OpenVLA's ``predict_action`` feeds them."""
        ids = self.tokenizer.encode(make_prompt(instruction)).ids
        if not ids or ids[0] != self.bos_id:
            ids = [self.bos_id, *ids]
        n = len(self.prompt_suffix_ids)
        if n and tuple(ids[-n:]) != self.prompt_suffix_ids:
            ids += list(self.prompt_suffix_ids)
        return ids

    def meta(self) -> dict:
        return {
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "prompt_suffix_ids": list(self.prompt_suffix_ids),
            "action_token_end": self.action_token_end,
        }

    def save(self, directory: str | Path) -> None:
        self.tokenizer.save(str(Path(directory) / "tokenizer.json"))

    @classmethod
    def load(cls, directory: str | Path, meta: dict | None = None) -> TextTokenizer:
        """From ``tokenizer.json``; ``meta`` (our checkpoints) or the HF special-token files give the ids."""
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {directory}")
        with reading(path, "tokenizer file"):  # tokenizers raises a bare Exception for a corrupt file
            tok = Tokenizer.from_file(str(path))
        if meta is not None:
            with config_values(directory / "oft_config.json"):  # our checkpoints keep the ids there
                ids = {**meta, "prompt_suffix_ids": tuple(int(i) for i in meta.get("prompt_suffix_ids", ()))}
                return cls(tok, **ids)
        names = _hf_special_tokens(directory)
        ids = {}
        for role, default in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<PAD>")):
            name = names.get(role, default)
            ids[role] = tok.token_to_id(name)
            if ids[role] is None:
                raise ValueError(f"tokenizer in {directory} has no {role} token {name!r}")
        space = tok.token_to_id("▁")
        return cls(tok, ids["bos"], ids["eos"], ids["pad"], () if space is None else (space,))


def _hf_special_tokens(directory: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        path = directory / fname
        if not path.is_file():
            continue
        data = read_json_object(path, "tokenizer config")
        for role in ("bos", "eos", "pad"):
            value = data.get(f"{role}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and role not in out:
                out[role] = value
    return out


def build_word_tokenizer(texts: Iterable[str], min_count: int = 1) -> TextTokenizer:
    """A small lower-cased word-level tokenizer over ``texts`` and the prompt template.

    Vocabulary: the 4 special tokens, the words, then 256 action-bin tokens at the end (the discrete head
    reads the last 256 ids, as OpenVLA does). Unknown words map to <unk>.
    """
    counts: dict[str, int] = {}
    corpus = [PROMPT_TEMPLATE.format(instruction=""), *texts]
    for text in corpus:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_count)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    for b in range(NUM_ACTION_BINS):
        vocab[f"<act{NUM_ACTION_BINS - 1 - b}>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    bos, eos, pad = vocab["<s>"], vocab["</s>"], vocab["<PAD>"]
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return TextTokenizer(tok, bos, eos, pad, (), action_token_end=len(vocab))
