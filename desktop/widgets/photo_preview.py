"""A photo scaled to fit its pane (aspect kept), or a message in its place.

One pixmap is kept, the size the worker made it; every resize scales that one down, so the pane never asks the
worker again and never grows the layout (its size policy ignores the pixmap's size).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap, QResizeEvent
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from desktop.thumbnails import to_pixmap

MINIMUM_SIDE = 120
# engine.heatmaps' colours, for the tooltip of a preview that shows a heatmap
HEATMAP_LEGEND = ("Red: the strongest evidence for the class; yellow: some; blue: none. Greyed: cropped away before "
                  "the model saw the photo.")


class PhotoPreview(QLabel):
    def __init__(self, message: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(MINIMUM_SIDE, MINIMUM_SIDE)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setWordWrap(True)
        self.source = QPixmap()  # the photo as the worker drew it; null while a message is shown
        self.show_message(message)

    def show_image(self, rgb: np.ndarray) -> None:
        """Show an RGB uint8 array (GUI thread: it becomes a pixmap here)."""
        self.source = to_pixmap(rgb)
        self._fit()

    def show_drawn(self, image: np.ndarray | None, problem: str | None = None) -> None:
        """What a preview job drew (jobs.PreviewImage), or why the photo cannot be shown."""
        if image is None:
            self.show_message(f"Cannot show this photo: {problem}")
        else:
            self.show_image(image)

    def show_message(self, text: str) -> None:
        self.source = QPixmap()
        self.setText(text)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self.source.isNull():
            self._fit()

    def _fit(self) -> None:
        ratio = self.devicePixelRatioF()
        scaled = self.source.scaled(self.contentsRect().size() * ratio, Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
        scaled.setDevicePixelRatio(ratio)
        self.setPixmap(scaled)


def beside_preview(table: QWidget, name: str) -> tuple[QSplitter, PhotoPreview, QLabel]:
    """``table`` with a heatmap preview and its caption to its right (objectNames ``name`` and ``name``'s
    "Preview" turned "Caption"), in a splitter that gives the preview 40 % (the table's size hint would leave
    it a sliver)."""
    preview = PhotoPreview()
    preview.setObjectName(name)
    preview.setToolTip(HEATMAP_LEGEND)
    caption = QLabel(objectName=name.replace("Preview", "Caption"))
    caption.setWordWrap(True)
    pane = QWidget()
    column = QVBoxLayout(pane)
    column.setContentsMargins(0, 0, 0, 0)
    column.addWidget(preview, 1)
    column.addWidget(caption)
    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(table)
    splitter.addWidget(pane)
    splitter.setStretchFactor(0, 3)
    splitter.setStretchFactor(1, 2)
    splitter.setSizes([600, 400])
    return splitter, preview, caption
