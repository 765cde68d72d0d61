from desktop.main_window import MainWindow


def test_main_window_has_its_pages(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.objectName() == "mainWindow"
    tabs = window.findChild(type(window.centralWidget()), "mainTabs")
    assert [tabs.widget(i).objectName() for i in range(tabs.count())] == [
        "dataPage", "trainPage", "evaluatePage", "predictPage"]
