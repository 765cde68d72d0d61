"""GUI entry point: reuse a running QApplication or create one, show the main window, run the loop."""

from __future__ import annotations

import sys


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from desktop.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Transfer Studio")
    app.setOrganizationName("Transfer Studio")
    window = MainWindow()
    window.show()
    return app.exec()
