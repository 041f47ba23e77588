"""The OpenAI API's request and response shapes, the subset biglittle serves, and biglittle's own extra fields.

Requests are pydantic models (FastAPI validates them; a failure is an HTTP 400 in OpenAI's error shape). Fields a
client may send but biglittle cannot honour are accepted only at their neutral values, so that nothing a client
asks for is silently ignored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import SPECULATION_SHAPE, TUNING_TASKS, GenerationConfig, choose_method, with_builtin_speculation
from ..errors import BigLittleError


class BigLittleOptions(BaseModel):
    """The request's "biglittle" object: the method and its settings (as `biglittle generate` names them)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not a silent default

    method: str | None = None
    gamma: int | Literal["auto"] | None = None
    drafter: str | None = None
    max_ngram: int | None = None
    tree: int | Literal["auto"] | None = None
    tree_depth: int | None = None
    tree_width: int | None = None
    top_k: int | None = None
    fallback_threshold: float | None = None
    rollback_threshold: float | None = None
    max_little_steps: int | None = Field(default=None, description="0 = never hand over")
    fallback: bool | None = Field(default=None, description="bild: false = rollback only (BiLD's ablation)")
    rollback: bool | None = Field(default=None, description="bild: false = fallback only (BiLD's ablation)")
    bild_thresholds: str | None = None
    draft_text: Literal[TUNING_TASKS] | None = Field(  # type: ignore[valid-type]
        default=None, description="unigram / bigram drafts: a task whose train split they are counted from"
    )  # a task only: a request must not make the server read its files
    draft_smoothing: float | None = None
    sources: bool = Field(
        default=False, description="stream chunks carry each token's text and source, and turned-down drafts"
    )
    compare_ar: bool = Field(
        default=False, description="then run ar on the same prompt: speedup measured and predicted"
    )


class StreamOptions(BaseModel):
    include_usage: bool = False


# Fields biglittle cannot honour, and the values that mean "off" (or leaving them out).
NEUTRAL_VALUES: dict[str, tuple] = {
    "n": (1,),
    "best_of": (1,),
    "echo": (False,),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "suffix": ("",),
    "tools": ([],),
    "functions": ([],),
    "response_format": ({"type": "text"},),
}


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI fields (user, metadata, ...) change nothing here

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    biglittle: BigLittleOptions = BigLittleOptions()  # never changed in place

    def check_supported(self) -> None:
        for name, neutral in NEUTRAL_VALUES.items():
            value = getattr(self, name, None)
            if value is not None and value not in neutral:
                raise RequestError(f"{name}={value!r} is not supported by biglittle", param=name)

    def config(self, defaults: GenerationConfig, has_draft: bool, builtin: bool = False) -> GenerationConfig:
        """The generation's settings: the request's over the server's defaults (method and, for the built-in pair,
        the shape of speculative decoding as `biglittle generate` chooses them)."""
        options = self.biglittle
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        given = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": tuple(stop) if stop is not None else None,
            **options.model_dump(exclude={"sources", "compare_ar", "max_little_steps"}),
        }
        config = replace(defaults, **{name: value for name, value in given.items() if value is not None})
        if options.max_little_steps is not None:
            config = replace(config, max_little_steps=options.max_little_steps or None)
        method = choose_method(
            options.method, has_draft=has_draft, drafter=config.drafter, bild_thresholds=options.bild_thresholds
        )
        named = [name for name in SPECULATION_SHAPE if getattr(options, name) is not None]
        return with_builtin_speculation(replace(config, method=method), named, builtin)

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_tokens


class CompletionRequest(GenerationRequest):
    prompt: str | list[int] | list[str] | list[list[int]]

    def prompt_input(self) -> str | list[int]:
        """The one prompt: text or token ids."""
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise RequestError("send one prompt per request", param="prompt")
            prompt = prompt[0]
        if not prompt:
            raise RequestError("the prompt is empty", param="prompt")
        return prompt  # type: ignore[return-value]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": message.role, "content": message.text()} for message in self.messages]


class RequestError(BigLittleError):
    """A request the server cannot serve as asked: an HTTP 400 naming the field at fault."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None):
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ResponseShape:
    """The JSON of one request's response, its stream chunks and their ids: completions or chat completions."""

    def __init__(self, chat: bool, model: str):
        self.chat, self.model = chat, model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def response(self, text: str, finish_reason: str, usage: dict, extra: dict) -> dict:
        if self.chat:
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
        else:
            choice = {"text": text}
        choice.update(index=0, finish_reason=finish_reason, logprobs=None)
        kind = "chat.completion" if self.chat else "text_completion"
        return self._envelope(kind, [choice]) | {"usage": usage, "biglittle": extra}

    def chunk(self, text: str | None, finish_reason: str | None = None, extra: dict | None = None) -> dict:
        """A stream chunk; `text` None makes the chat stream's first chunk (the role) or the final one."""
        if self.chat:
            delta = {"role": "assistant", "content": ""} if text is None and finish_reason is None else {}
            choice: dict[str, Any] = {"delta": delta if text is None else {"content": text}}
        else:
            choice = {"text": text or ""}
        choice.update(index=0, finish_reason=finish_reason, logprobs=None)
        chunk = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [choice])
        return chunk | ({"biglittle": extra} if extra else {})

    def usage_chunk(self, usage: dict) -> dict:
        return self._envelope("chat.completion.chunk" if self.chat else "text_completion", []) | {"usage": usage}

    def _envelope(self, kind: str, choices: list) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
