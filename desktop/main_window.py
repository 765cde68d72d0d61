"""The main window (a minimal shell until the GUI issue builds the pages)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget

from engine import __version__


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle(f"Transfer Studio {__version__}")
        tabs = QTabWidget(objectName="mainTabs")
        for name in ("Data", "Train", "Evaluate", "Predict"):
            page = QLabel(f"{name}: use the transfer-studio command for now (see README)")
            page.setObjectName(f"{name.lower()}Page")
            tabs.addTab(page, name)
        self.setCentralWidget(tabs)
        self.resize(1000, 700)
