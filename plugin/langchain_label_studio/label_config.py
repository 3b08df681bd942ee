"""Label configs: the defaults for prompt and chat mode, and where a config wants its data.

Everything here is local XML work, so a bad config is caught at construction time,
before any network call.

The defaults are laid out for an annotator's screen (checked at 1366x768): the input on
the left in a box that scrolls on its own, the rating and the answer on the right, so the
rating is visible without scrolling. Chat projects review every assistant turn: a
``<Repeater>`` (open-source since 1.x) draws one block per turn from ``$review_turns``,
each with its own rating and correction box. ``Paragraphs`` shows an empty
``00:00:00 - 00:00:00`` time on every message when there is no audio; the shared
:data:`STYLE` hides it.

The answer boxes are ``transcription="true"``: Label Studio 1.23 then shows a submitted or
pre-filled answer as an open ``<textarea>`` (a click puts the cursor in it, Enter starts a new
line) instead of a line of text with an edit button, whose editor sizes itself to the text (one
line for a one-line answer). Its ``rows`` does not reach that editor, so :data:`STYLE` gives it a
height of several lines, lets it grow with a long answer (``field-sizing``, where the browser has
it) up to about half the screen, and scrolls it past that.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

Mode = Literal["prompt", "chat"]

#: Repeater index placeholder used in per-turn configs.
INDEX = "{{idx}}"
#: Task data key of the per-turn list (``[{"heading", "messages"}]``) that per-turn configs repeat over.
TURNS_KEY = "review_turns"

#: Styles shared by the default configs. Label Studio's CSS-module class names carry a hash
#: suffix (``time--JzGDH``), so they are matched by prefix.
STYLE = """
<Style>
  .lls-row { display: flex; gap: 20px; align-items: flex-start; flex-wrap: wrap; }
  .lls-input { flex: 3 1 420px; min-width: 0; max-height: 52vh; overflow-y: auto;
               background: #fafafa; border: 1px solid #e5e5e5; border-radius: 8px; padding: 4px 14px; }
  .lls-review { flex: 2 1 300px; min-width: 0; }
  .lls-turn { border-top: 1px solid #e5e5e5; padding-top: 6px; margin-top: 6px; }
  .lls-turn .lls-input { max-height: 36vh; }
  [class*="titleWrapper--"] [class*="time--"] { display: none; }
  [class*="phraseContainer--"] [class*="selectAllBtnWrapper--"] { display: none; }
  .lls-input [class*="authorFilter--"] { display: none; }
  .lls-review [data-testid="htx-textbox-input"] { field-sizing: content; min-height: 7.5em; max-height: 55vh;
                                                 overflow-y: auto; }
  .lls-review .lls-answer [data-testid="htx-textbox-input"] { min-height: 11em; }
</Style>"""

PROMPT_CONFIG = f"""
<View>{STYLE}
<View className="lls-row">
  <View className="lls-input">
    <Header value="Prompt" size="5"/>
    <Text name="prompt" value="$prompt"/>
  </View>
  <View className="lls-review">
    <Header value="Rate the answer" size="5"/>
    <Rating name="rating" toName="prompt" maxRating="5"/>
    <Header value="Answer: edit it to correct it" size="5"/>
    <View className="lls-answer">
      <TextArea name="response" toName="prompt" rows="8" editable="true" transcription="true" maxSubmissions="1"
                required="true" placeholder="The answer the model should have given"/>
    </View>
  </View>
</View>
</View>"""

CHAT_CONFIG = f"""
<View>{STYLE}
<Repeater on="$review_turns" indexFlag="{INDEX}">
  <View className="lls-turn">
    <Header value="$review_turns[{INDEX}].heading" size="5"/>
    <View className="lls-row">
      <View className="lls-input">
        <Paragraphs name="turn_{INDEX}" value="$review_turns[{INDEX}].messages"
                    layout="dialogue" nameKey="role" textKey="content"/>
      </View>
      <View className="lls-review">
        <Rating name="rating_{INDEX}" toName="turn_{INDEX}" maxRating="5"/>
        <TextArea name="correction_{INDEX}" toName="turn_{INDEX}" rows="4" editable="true" transcription="true"
                  maxSubmissions="1"
                  placeholder="The answer the assistant should have given (leave empty if it is right)"/>
      </View>
    </View>
  </View>
</Repeater>
<View className="lls-turn">
  <Header value="$latest_heading" size="5"/>
  <View className="lls-row">
    <View className="lls-input">
      <Paragraphs name="dialogue" value="$latest_turn" layout="dialogue" nameKey="role" textKey="content"/>
    </View>
    <View className="lls-review">
      <Header value="Rate the latest answer" size="6"/>
      <Rating name="rating" toName="dialogue" maxRating="5"/>
      <Header value="Latest answer: edit it to correct it" size="6"/>
      <View className="lls-answer">
        <TextArea name="response" toName="dialogue" rows="6" editable="true" transcription="true" maxSubmissions="1"
                  required="true" placeholder="The answer the assistant should have given"/>
      </View>
    </View>
  </View>
</View>
</View>"""


def _comparison_config(input_tag: str) -> str:
    return f"""
<View>{STYLE}
<View className="lls-input" style="max-height: 30vh">
  <Header value="Request" size="5"/>
  {input_tag}
</View>
<Header value="Which answer is better? Click it." size="4"/>
<View className="lls-row">
  <View className="lls-review">
    <Header value="Answer A" size="5"/><Text name="answer_left" value="$answer_left"/>
  </View>
  <View className="lls-review">
    <Header value="Answer B" size="5"/><Text name="answer_right" value="$answer_right"/>
  </View>
</View>
<Pairwise name="comparison" toName="answer_left,answer_right"/>
<Header value="Optional: if both are wrong, the answer that should have been given" size="5"/>
<TextArea name="response" toName="{"dialogue" if "Paragraphs" in input_tag else "prompt"}" rows="4" editable="true"
          maxSubmissions="1"/>
</View>"""


#: Side-by-side configs of challenger comparisons (``<Pairwise>``): the request, two answers.
COMPARISON_CONFIGS: dict[str, str] = {
    "prompt": _comparison_config('<Text name="prompt" value="$prompt"/>'),
    "chat": _comparison_config(
        '<Paragraphs name="dialogue" value="$prompt" layout="dialogue" nameKey="role" textKey="content"/>'
    ),
}

#: The configs of projects created before per-turn review (still read and written).
LEGACY_PROMPT_CONFIG = """<View>
<Style>
    .prompt-box {
        background-color: white;
        border-radius: 10px;
        box-shadow: 0px 4px 6px rgba(0, 0, 0, 0.1);
        padding: 20px;
    }
</Style>
<View className="root">
    <View className="prompt-box">
        <Text name="prompt" value="$prompt"/>
    </View>
    <TextArea name="response" toName="prompt"
              maxSubmissions="1" editable="true"
              required="true"/>
</View>
<Header value="Rate the response:"/>
<Rating name="rating" toName="prompt"/>
</View>"""

LEGACY_CHAT_CONFIG = """
<View>
<View className="root">
     <Paragraphs name="dialogue"
               value="$prompt"
               layout="dialogue"
               textKey="content"
               nameKey="role"
               granularity="sentence"/>
  <Header value="Final response:"/>
    <TextArea name="response" toName="dialogue"
              maxSubmissions="1" editable="true"
              required="true"/>
</View>
<Header value="Rate the response:"/>
<Rating name="rating" toName="dialogue"/>
</View>"""

DEFAULT_CONFIGS: dict[str, str] = {"prompt": PROMPT_CONFIG, "chat": CHAT_CONFIG}

#: Object tags that can show a chat dialogue (a list of {"role", "content"}).
_DIALOGUE_TAGS = {"Paragraphs"}


@dataclass(frozen=True)
class Layout:
    """Where a label config reads its input and takes the answer.

    ``value_key`` is the task ``data`` key of the input (``$prompt`` -> ``prompt``),
    ``from_name``/``to_name`` name the TextArea and its object tag (used for the
    pre-filled answer), ``input_type`` is the object tag (``Text``, ``Paragraphs``...).

    A per-turn config has, besides that TextArea (for the latest turn, read from
    ``latest_key``), a ``<Repeater>`` over ``turns_key`` with a TextArea (``turn_box``) and
    an object (``turn_object``) per earlier turn, their names holding ``{{idx}}``. The whole
    dialogue still goes to ``value_key`` (``prompt``), for export.
    """

    value_key: str
    from_name: str
    to_name: str
    input_type: str
    turns_key: str | None = None
    latest_key: str | None = None
    turn_box: str | None = None
    turn_object: str | None = None
    index_flag: str = INDEX

    @property
    def mode(self) -> Mode:
        """The capture mode this config fits: ``chat`` for a dialogue tag, else ``prompt``."""
        return "chat" if self.input_type in _DIALOGUE_TAGS else "prompt"

    @property
    def per_turn(self) -> bool:
        """Whether annotators review every assistant turn (one block per turn)."""
        return self.turns_key is not None

    def names(self, turn: int) -> tuple[str, str]:
        """The TextArea's and its object's names for one earlier turn (per-turn configs)."""
        assert self.turn_box is not None and self.turn_object is not None
        return self.turn_box.replace(self.index_flag, str(turn)), self.turn_object.replace(self.index_flag, str(turn))


#: A Repeater's ``on="$review_turns"`` -> ``review_turns``.
_REPEATED_VALUE = re.compile(r"^\$([A-Za-z0-9_]+)$")


def parse_layout(config: str) -> Layout:
    """Find the first TextArea of ``config`` (outside any ``<Repeater>``) and the object tag it annotates.

    Raises:
        ValueError: the config is not XML, has no TextArea, or the TextArea's
            ``toName`` names no tag with a ``$`` value.
    """
    try:
        root = ET.fromstring(config.strip())
    except ET.ParseError as exc:
        raise ValueError(f"project_config is not valid XML: {exc}") from None
    by_name = {el.get("name"): el for el in root.iter() if el.get("name")}
    repeated = {id(el) for r in root.iter("Repeater") for el in r.iter("TextArea")}
    textarea = next((el for el in root.iter("TextArea") if id(el) not in repeated), None)
    if textarea is None:
        raise ValueError(
            "project_config has no <TextArea> tag: the model's answer is pre-filled into a "
            'TextArea, so add one, e.g. <TextArea name="response" toName="prompt" '
            'editable="true"/>.'
        )
    from_name, to_name, target = _target(textarea, by_name)
    value = target.get("value") or ""
    repeater = next((r for r in root.iter("Repeater") if any(True for _ in r.iter("TextArea"))), None)
    if repeater is None:
        return Layout(value_key=value[1:], from_name=from_name, to_name=to_name, input_type=target.tag)
    flag = repeater.get("indexFlag") or INDEX
    on = _REPEATED_VALUE.match(repeater.get("on") or "")
    turn_box, turn_object, _ = _target(next(repeater.iter("TextArea")), by_name)
    if on is None or flag not in turn_box or flag not in turn_object:
        raise ValueError(
            f'project_config: a <TextArea> inside a <Repeater> needs "{flag}" in its name and toName, '
            'and the Repeater on="$list" a task data list.'
        )
    return Layout(
        "prompt",
        from_name,
        to_name,
        target.tag,
        turns_key=on.group(1),
        latest_key=value[1:],
        turn_box=turn_box,
        turn_object=turn_object,
        index_flag=flag,
    )


def _target(textarea: ET.Element, by_name: dict[str | None, ET.Element]) -> tuple[str, str, ET.Element]:
    """A TextArea's name, its object's name and the object (which must read a ``$key``)."""
    from_name = textarea.get("name")
    to_name = (textarea.get("toName") or "").split(",")[0].strip()
    if not from_name or not to_name:
        raise ValueError('project_config: the <TextArea> needs both "name" and "toName".')
    target = by_name.get(to_name)
    if target is None:
        raise ValueError(f'project_config: the <TextArea> points to toName="{to_name}", no tag has that name.')
    value = target.get("value") or ""
    if not value.startswith("$") or len(value) < 2:
        raise ValueError(
            f'project_config: <{target.tag} name="{to_name}"> needs a value="$key" naming the task data key.'
        )
    return from_name, to_name, target


def check_mode(layout: Layout, mode: Mode) -> None:
    """Raise ``ValueError`` when a config cannot show captures of ``mode``."""
    if mode == "chat" and layout.mode != "chat":
        raise ValueError(
            f'chat mode needs a dialogue tag (<Paragraphs layout="dialogue" nameKey="role" '
            f'textKey="content">) as the TextArea\'s target; the config has <{layout.input_type}>.'
        )
    if mode == "prompt" and layout.mode != "prompt":
        raise ValueError(
            f"prompt mode needs a text tag (<Text>) as the TextArea's target; the config has <{layout.input_type}>."
        )
