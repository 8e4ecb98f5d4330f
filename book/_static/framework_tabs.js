/* Framework tabs (book/framework_tabs.py renders the markup).
 * One choice for the whole book: clicking a tab selects that framework in every tab set on the
 * page, and localStorage carries it to other pages and reloads. Without this script the tab
 * list stays hidden and both frameworks are shown one after the other. */
(function () {
  "use strict";
  var STORAGE_KEY = "attention-course.framework";

  function storedFramework() {
    try { return window.localStorage.getItem(STORAGE_KEY); } catch (e) { return null; }
  }
  function storeFramework(framework) {
    // Private modes and file:// pages may refuse storage; the page still works, just forgets.
    try { window.localStorage.setItem(STORAGE_KEY, framework); } catch (e) { /* ignore */ }
  }

  function tabsOf(set) { return Array.prototype.slice.call(set.querySelectorAll('[role="tab"]')); }

  function selectInSet(set, framework) {
    var tabs = tabsOf(set);
    // A set without the requested framework keeps what it shows.
    if (!tabs.some(function (tab) { return tab.dataset.framework === framework; })) return;
    tabs.forEach(function (tab) {
      var on = tab.dataset.framework === framework;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      var panel = document.getElementById(tab.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    });
  }

  function selectEverywhere(framework) {
    document.querySelectorAll(".framework-tabs").forEach(function (set) {
      selectInSet(set, framework);
    });
  }

  function choose(tab) {
    // Sets above the clicked one may change height; keep the clicked tab where the reader sees it.
    var before = tab.getBoundingClientRect().top;
    selectEverywhere(tab.dataset.framework);
    storeFramework(tab.dataset.framework);
    window.scrollBy(0, tab.getBoundingClientRect().top - before);
  }

  function onKeydown(event) {
    var tabs = tabsOf(event.currentTarget);
    var index = tabs.indexOf(event.target);
    if (index < 0) return;
    var next = {
      ArrowRight: (index + 1) % tabs.length,
      ArrowLeft: (index - 1 + tabs.length) % tabs.length,
      Home: 0,
      End: tabs.length - 1,
    }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    tabs[next].focus();
    choose(tabs[next]);
  }

  function init() {
    var sets = document.querySelectorAll(".framework-tabs");
    if (!sets.length) return;
    sets.forEach(function (set) {
      var list = set.querySelector('[role="tablist"]');
      list.hidden = false;
      list.addEventListener("click", function (event) {
        var tab = event.target.closest('[role="tab"]');
        if (tab) choose(tab);
      });
      list.addEventListener("keydown", onKeydown);
      var first = tabsOf(set)[0];
      if (first) selectInSet(set, first.dataset.framework);
    });
    document.documentElement.classList.add("framework-tabs-ready");
    var saved = storedFramework();
    if (saved) selectEverywhere(saved);
  }

  // Another window of the book changed the choice: follow it.
  window.addEventListener("storage", function (event) {
    if (event.key === STORAGE_KEY && event.newValue) selectEverywhere(event.newValue);
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
