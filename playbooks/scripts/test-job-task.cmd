@echo off
rem ===========================================================================
rem Proves that the scheduled task Runner-Migration works before anything
rem depends on it: the job runs as the domain's Administrator (NETBIOS from
rem customer.cmd) and can read old-sbs's data folder through its
rem administrative share, which a plain WinRM session cannot (see job.cmd).
rem Run by the runner with no argument: hands itself to the task and waits.
rem ===========================================================================
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
if /i "%~1"=="in-task" goto work
call C:\mig\bin\job.cmd test-job-task "%~f0" in-task
exit /b %errorlevel%

:work
echo Job runs as %USERDOMAIN%\%USERNAME% on %COMPUTERNAME%
if /i not "%USERDOMAIN%\%USERNAME%"=="%MIG_NETBIOS%\Administrator" (
    echo Expected %MIG_NETBIOS%\Administrator: recreate the task, see the step create-job-task. 1>&2
    exit /b 1
)
set SHARE=\\%MIG_OLD%\%MIG_DATA::=$%
dir "%SHARE%"
if errorlevel 1 (
    echo Cannot read %SHARE% with the task's credentials. 1>&2
    exit /b 1
)
exit /b 0
