from twisted.application.service import ServiceMaker

waiter = ServiceMaker(
    "waiter",
    "waiter_service.tap",
    "The waiter as a CloudFlow asynchronous SOAP service",
    "waiter",
)
