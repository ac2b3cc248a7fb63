"""Request and response models of the HTTP API, built per server so the OpenAPI document states the
configured limits (``maxItems``, ``maxLength``) and the task's own prediction shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from tuneproof.serve.settings import Limits


class ClassPrediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class MultilabelPrediction(BaseModel):
    labels: list[str]
    probabilities: dict[str, float]


class ScorePrediction(BaseModel):
    score: float


class Entity(BaseModel):
    type: str
    words: list[int] = Field(description="[first word, one past the last word]")
    text: str
    score: float
    start: int | None = Field(default=None, description="character offset, when the tokenizer gives one")
    end: int | None = None


class EntityPrediction(BaseModel):
    words: list[str]
    tags: list[str]
    entities: list[Entity]


class GenerationPrediction(BaseModel):
    generation: str


PREDICTION_OF: dict[str, type[BaseModel]] = {
    "classification": ClassPrediction,
    "image_classification": ClassPrediction,
    "multilabel": MultilabelPrediction,
    "regression": ScorePrediction,
    "token_classification": EntityPrediction,
    "seq2seq": GenerationPrediction,
    "dapt": GenerationPrediction,
}


class ErrorBody(BaseModel):
    type: str
    message: str
    limit: str | None = None
    max: float | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def predict_models(task: str, limits: Limits) -> tuple[type[BaseModel], type[BaseModel]]:
    text = Annotated[
        str, StringConstraints(min_length=1, max_length=limits.max_chars_per_text, pattern=r"\S")
    ]
    request = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        texts=(list[text], Field(min_length=1, max_length=limits.max_texts)),
    )
    pred = PREDICTION_OF.get(task, GenerationPrediction)
    response = create_model("PredictResponse", predictions=(list[pred], ...))  # type: ignore[valid-type]
    return request, response


def image_predict_model(limits: Limits) -> type[BaseModel]:
    """``{"images": [base64, ...]}``; a ``data:image/...;base64,`` prefix is allowed. The string
    length bound is the base64 length of ``max_image_bytes`` (plus a data-URI prefix), so an
    oversized image is refused before it is decoded."""
    b64_max = 4 * -(-limits.max_image_bytes // 3) + 64
    image = Annotated[str, StringConstraints(min_length=1, max_length=b64_max)]
    return create_model(
        "ImagePredictRequest",
        __config__=ConfigDict(extra="forbid"),
        images=(list[image], Field(min_length=1, max_length=limits.max_images)),
    )


def chat_request_model(limits: Limits) -> type[BaseModel]:
    content = Annotated[str, StringConstraints(max_length=limits.max_chars_per_text)]

    class ChatMessage(BaseModel):
        model_config = ConfigDict(extra="forbid")
        role: Literal["system", "user", "assistant"]
        content: content

    class StreamOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        include_usage: bool = False

    class ChatCompletionRequest(BaseModel):
        """The OpenAI chat completions request, less what a packaged model cannot honour (``n`` > 1,
        tools, logprobs, stop strings): those are refused by name rather than ignored."""

        model_config = ConfigDict(extra="forbid")
        model: str = Field(default="tuneproof", max_length=256)
        messages: list[ChatMessage] = Field(min_length=1, max_length=limits.max_texts)
        max_tokens: int | None = Field(default=None, ge=1, le=limits.max_new_tokens)
        max_completion_tokens: int | None = Field(default=None, ge=1, le=limits.max_new_tokens)
        temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="0 or absent: greedy")
        top_p: float | None = Field(default=None, gt=0.0, le=1.0)
        seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
        n: Literal[1] = 1
        stream: bool = False
        stream_options: StreamOptions | None = None
        user: str | None = Field(default=None, max_length=256)

    return ChatCompletionRequest


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


def limit_of(error: dict[str, Any], limits: Limits) -> tuple[str, int] | None:
    """Which configured limit a pydantic validation error is about, if any."""
    loc = [x for x in error.get("loc", ()) if x != "body"]
    kind = error.get("type")
    if kind == "too_long" and loc in (["texts"], ["messages"]):
        return "max_texts", limits.max_texts
    if kind == "string_too_long" and loc and loc[0] in ("texts", "messages"):
        return "max_chars_per_text", limits.max_chars_per_text
    if kind == "too_long" and loc == ["images"]:
        return "max_images", limits.max_images
    if kind == "string_too_long" and loc and loc[0] == "images":
        return "max_image_bytes", limits.max_image_bytes
    if kind == "less_than_equal" and loc and loc[0] in ("max_tokens", "max_completion_tokens"):
        return "max_new_tokens", limits.max_new_tokens
    return None
