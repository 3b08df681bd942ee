"""Label configs: the defaults for prompt and chat mode, and where a config wants its data.

Everything here is local XML work, so a bad config is caught at construction time,
before any network call.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

Mode = Literal["prompt", "chat"]

PROMPT_CONFIG = """
<View>
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

CHAT_CONFIG = """
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
    """

    value_key: str
    from_name: str
    to_name: str
    input_type: str

    @property
    def mode(self) -> Mode:
        """The capture mode this config fits: ``chat`` for a dialogue tag, else ``prompt``."""
        return "chat" if self.input_type in _DIALOGUE_TAGS else "prompt"


def parse_layout(config: str) -> Layout:
    """Find the first TextArea of ``config`` and the object tag it annotates.

    Raises:
        ValueError: the config is not XML, has no TextArea, or the TextArea's
            ``toName`` names no tag with a ``$`` value.
    """
    try:
        root = ET.fromstring(config.strip())
    except ET.ParseError as exc:
        raise ValueError(f"project_config is not valid XML: {exc}") from None
    by_name = {el.get("name"): el for el in root.iter() if el.get("name")}
    textarea = next((el for el in root.iter("TextArea")), None)
    if textarea is None:
        raise ValueError(
            "project_config has no <TextArea> tag: the model's answer is pre-filled into a "
            'TextArea, so add one, e.g. <TextArea name="response" toName="prompt" '
            'editable="true"/>.'
        )
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
    return Layout(value_key=value[1:], from_name=from_name, to_name=to_name, input_type=target.tag)


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
